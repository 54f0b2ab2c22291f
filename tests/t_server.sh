#!/usr/bin/env bash
# t_server.sh — the tallyd HTTP API (docs/API.md) end to end with curl:
# start-up files and output, health/server/metrics, login (good, bad, 5 bad ->
# 429 even for the right password), tokens, roles (reader/writer/ledger admin,
# 403 on other ledgers) with "a failed request changes nothing" checked by
# comparing GET state before/after, ledgers and users, set/get (latest, tx,
# rev, at)/history/scan/del/tx/state/proofs/checkpoint with exact JSON key sets,
# conditional writes (409), malformed JSON (400), unknown body fields (400
# naming the field, nothing written, for every endpoint with a body), the
# last global admin (409 last_admin), 404s, 413s, transaction numbers and
# proof sizes (400 malformed / 404 beyond the ledger / 400 impossible
# combination), 405 with Allow, HEAD, the password length limit, the system
# ledger's records (parsed from its log by FORMAT.md), restart persistence,
# the generated admin password (printed once), checkpoint signatures and proof
# bundles checked independently in Python (tests/lib_server.sh: tv.py), and
# 1000 ledgers over one keep-alive connection (time-bounded), a write to each
# and tallyd's memory with all of them open.
#
# Env: TALLYD_BIN (default build/tallyd); TALLY_BIN is not used (the client is
# tested by t_liar.sh). Python: one persistent python3 evaluates every JSON
# check (lib_server.sh: jq_py). Prints "FAIL: ..." per failed assertion and a summary line.
# Prints "SKIP: tallyd not built" and exits 0 if the server binary is missing.
set -u
cd "$(dirname "$0")/.." || exit 2
. tests/lib_server.sh
ls_init server
ORG() { echo "tally.local/ledger/$AID"; }
tv_note() { BODY="$1" jq_py "tv(T_note, body, '$VKEY', '$(ORG)')"; }
tv_bundle() { jq_py "tv(T_bundle, j, '$VKEY', '$(ORG)', $1, '$2'${3:+, $3})"; }

D="$W/data"
start_tallyd "$D" || { echo "FAIL: setup: tallyd did not start: $(cat "$SOUT.err" 2>/dev/null | head -c 500)"; summary t_server; exit 1; }
PID1=$SPID
U=$SURL
OUT1="$SOUT"

section "start-up"
check_match "startup: listening line" "^tallyd listening on http://127\.0\.0\.1:$SPORT\$" "$(grep listening "$OUT1")"
check_eq "startup: no generated password printed when TALLY_ADMIN_PASSWORD is set" "0" "$(grep -c 'admin password' "$OUT1")"
req GET "$U/v1/server"
check_eq "GET /v1/server status" 200 "$CODE"
check_eq "GET /v1/server keys" '["name", "vkey"]' "$(jq_py 'sorted(j)')"
VKEY=$(jq_py 'j["vkey"]')
NAME=$(jq_py 'j["name"]')
check_eq "server name default" "tally.local" "$NAME"
check_match "vkey format" '^tally\.local\+[0-9a-f]{8}\+[A-Za-z0-9+/=]+$' "$VKEY"
check_eq "vkey key id = SHA-256(name||0A||01||pub)[0:4]" ok "$(jq_py "tv(lambda: parse_vkey('$VKEY') and 'ok')")"
check_eq "startup prints the vkey" 1 "$(grep -cF "$VKEY" "$OUT1")"
check_eq "server.vkey file" "$VKEY" "$(tr -d '\n' <"$D/server.vkey")"
check_eq "server.key mode" "600" "$(stat -c %a "$D/server.key" 2>/dev/null)"
check_match "server.key format" '^PRIVATE\+KEY\+tally\.local\+[0-9a-f]{8}\+[A-Za-z0-9+/=]+$' "$(head -n1 "$D/server.key")"
[ -d "$D/system" ] && ok || bad "DIR/system exists" "dir" "missing"
[ -d "$D/ledgers" ] && ok || bad "DIR/ledgers exists" "dir" "missing"

req GET "$U/health"
check_eq "health" '200 {"ok": true}' "$CODE $(jq_py 'j')"
check_match "health content type" '^application/json' "$CTYPE"
req GET "$U/metrics"
check_eq "metrics status" 200 "$CODE"
check_match "metrics is text" '^text/plain' "$CTYPE"

section "login / tokens"
req POST "$U/v1/login" '{"user":"admin","password":"'"$ADMIN_PW"'"}'
check_eq "login admin status" 200 "$CODE"
check_eq "login keys" '["expires", "token", "user"]' "$(jq_py 'sorted(j)')"
check_eq "login user" admin "$(jq_py 'j["user"]')"
check_match "login expires RFC 3339" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$' "$(jq_py 'j["expires"]')"
AT=$(jq_py 'j["token"]')

err_is() { # what, status, code
    check_eq "$1: status" "$2" "$CODE"
    check_eq "$1: error body" "$3 True" "$(jq_py 'j["error"]["code"] + " " + str(sorted(j)==["error"] and sorted(j["error"])==["code","message"] and isinstance(j["error"]["message"], str) and len(j["error"]["message"])>0)')"
}
req POST "$U/v1/login" '{"user":"admin","password":"wrong"}'
err_is "login bad password" 401 unauthorized
req POST "$U/v1/login" '{"user":"nobody","password":"x"}'
err_is "login unknown user" 401 unauthorized
req POST "$U/v1/login" '{"user":"admin"'
err_is "login malformed JSON" 400 bad_request

req GET "$U/v1/ledgers"
err_is "no token" 401 unauthorized
req GET "$U/v1/ledgers" "" "bogus-token-0000"
err_is "bogus token" 401 unauthorized

section "ledgers"
req POST "$U/v1/ledgers" '{"name":"nope"}'
err_is "create ledger without token" 401 unauthorized
req POST "$U/v1/ledgers" '{"name":"nope"}' "bogus"
err_is "create ledger with bogus token" 401 unauthorized
req POST "$U/v1/ledgers" '{"name":"A"}' "$AT"
check_eq "create ledger A status" 201 "$CODE"
check_eq "create ledger keys" '["id", "name", "origin"]' "$(jq_py 'sorted(j)')"
AID=$(jq_py 'j["id"]')
check_match "ledger id 32 hex" '^[0-9a-f]{32}$' "$AID"
check_eq "ledger origin" "tally.local/ledger/$AID" "$(jq_py 'j["origin"]')"
req POST "$U/v1/ledgers" '{"name":"B"}' "$AT"
check_eq "create ledger B" 201 "$CODE"
BID=$(jq_py 'j["id"]')
check_ne "ledger ids differ" "$AID" "$BID"
req POST "$U/v1/ledgers" '{"name":"A"}' "$AT"
err_is "create ledger twice" 409 conflict
for n in 'a b' '' 'x/y' "$(printf 'n%.0s' $(seq 65))" '..'; do
    req POST "$U/v1/ledgers" "{\"name\":\"$n\"}" "$AT"
    [ "$n" = ".." ] && { [ "$CODE" = 400 ] && ok || echo "NOTE: ledger name '..' accepted with $CODE (it matches [A-Za-z0-9._-]{1,64} and is stored by id, but URL dot-segment removal makes /v1/ledgers/.. unreachable for most HTTP clients)"; continue; }
    err_is "create ledger bad name '$n'" 400 bad_request
done
req POST "$U/v1/ledgers" '{"nam":"C"}' "$AT"
err_is "create ledger missing name" 400 bad_request
req GET "$U/v1/ledgers" "" "$AT"
check_eq "list ledgers (admin)" '[["A", "'"$AID"'", 0], ["B", "'"$BID"'", 0]]' "$(jq_py 'sorted([[l["name"],l["id"],l["size"]] for l in j["ledgers"] if l["name"] in ("A","B")])')"
check_eq "list ledger item keys" '["id", "name", "size"]' "$(jq_py 'sorted(j["ledgers"][0])')"
req GET "$U/v1/ledgers/A" "" "$AT"
check_eq "describe A keys" '["id", "name", "origin", "root", "size"]' "$(jq_py 'sorted(j)')"
check_eq "describe A empty" "A $AID 0 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" "$(jq_py '" ".join([j["name"], j["id"], str(j["size"]), j["root"]])')"
req GET "$U/v1/ledgers/nosuch" "" "$AT"
err_is "describe unknown ledger" 404 not_found

section "users and roles"
req POST "$U/v1/users" '{"name":"rd","password":"rd-secret-pw","role":"reader","ledger":"A"}' "$AT"
check_eq "create reader status" 201 "$CODE"
check_eq "create reader body" '{"ledger": "A", "name": "rd", "role": "reader"}' "$(jq_py 'dict(sorted(j.items()))')"
req POST "$U/v1/users" '{"name":"wr","password":"wr-secret-pw","role":"writer","ledger":"A"}' "$AT"
check_eq "create writer" 201 "$CODE"
req POST "$U/v1/users" '{"name":"la","password":"la-secret-pw","role":"admin","ledger":"A"}' "$AT"
check_eq "create ledger admin" 201 "$CODE"
req POST "$U/v1/users" '{"name":"rl","password":"rl-secret-pw","role":"reader","ledger":"A"}' "$AT"
check_eq "create rate-limit user" 201 "$CODE"
req POST "$U/v1/users" '{"name":"nopw","role":"reader","ledger":"A"}' "$AT"
err_is "create new user without password" 400 bad_request
req POST "$U/v1/users" '{"name":"badrole","password":"p","role":"king","ledger":"A"}' "$AT"
err_is "create user bad role" 400 bad_request
req POST "$U/v1/users" '{"name":"nol","password":"p","role":"reader","ledger":"nosuch"}' "$AT"
err_is "create user on unknown ledger" 404 not_found
req POST "$U/v1/users" '{"name":"bad name","password":"p","role":"reader","ledger":"A"}' "$AT"
err_is "create user bad name" 400 bad_request
# A NUL in a name, role or password is refused, not cut off at the NUL
# (bodies are parsed with NULs allowed, for keys and values).
req POST "$U/v1/users" '{"name":"nulpw","password":"x\u0000long-secret","role":"reader","ledger":"A"}' "$AT"
err_is "create user: NUL in the password" 400 bad_request
req POST "$U/v1/users" '{"name":"nul\u0000x","password":"pw-secret","role":"reader","ledger":"A"}' "$AT"
err_is "create user: NUL in the name" 400 bad_request
req POST "$U/v1/users" '{"name":"nulrole","password":"pw-secret","role":"admin\u0000","ledger":"A"}' "$AT"
err_is "create user: NUL in the role" 400 bad_request
req POST "$U/v1/users" '{"name":"nulled","password":"pw-secret","role":"reader","ledger":"A\u0000x"}' "$AT"
err_is "create user: NUL in the ledger" 400 bad_request
req POST "$U/v1/ledgers" '{"name":"nul\u0000x"}' "$AT"
err_is "create ledger: NUL in the name" 400 bad_request
req GET "$U/v1/ledgers/nul" "" "$AT"
check_eq "no ledger 'nul' was created" 404 "$CODE"
req POST "$U/v1/login" "{\"user\":\"admin\\u0000x\",\"password\":\"$ADMIN_PW\"}"
err_is "login: NUL in the user name" 400 bad_request
req POST "$U/v1/login" "{\"user\":\"admin\",\"password\":\"$ADMIN_PW\\u0000x\"}"
err_is "login: NUL in the password" 400 bad_request

RT=$(login "$U" rd rd-secret-pw)
WT=$(login "$U" wr wr-secret-pw)
LT=$(login "$U" la la-secret-pw)
check_ne "reader login" "" "$RT"
check_ne "writer login" "" "$WT"
check_ne "ledger admin login" "" "$LT"

req GET "$U/v1/ledgers" "" "$RT"
check_eq "reader lists only A" '["A"]' "$(jq_py 'sorted(l["name"] for l in j["ledgers"])')"

snapshot() { # -> SNAP: describe A/B, ledger list, state (with admin token)
    local s=""
    req GET "$U/v1/ledgers/A" "" "$AT"; s="$s|$CODE $BODY"
    req GET "$U/v1/ledgers/B" "" "$AT"; s="$s|$CODE $BODY"
    req GET "$U/v1/ledgers" "" "$AT"; s="$s|$CODE $BODY"
    req GET "$U/v1/ledgers/A/scan?prefix=" "" "$AT"; s="$s|$CODE $BODY"
    SNAP="$s"
}
snapshot; S0="$SNAP"
req POST "$U/v1/ledgers/A/set" '{"entries":[{"key":"k","value":"evil"}]}' "$RT"
err_is "reader set" 403 forbidden
req POST "$U/v1/ledgers/A/verified/set" '{"entries":[{"key":"k","value":"evil"}],"trusted":0}' "$RT"
err_is "reader verified set" 403 forbidden
req POST "$U/v1/ledgers/A/del" '{"key":"k"}' "$RT"
err_is "reader del" 403 forbidden
req POST "$U/v1/ledgers" '{"name":"evil"}' "$RT"
err_is "reader create ledger" 403 forbidden
req POST "$U/v1/ledgers" '{"name":"evil"}' "$WT"
err_is "writer create ledger" 403 forbidden
req POST "$U/v1/ledgers" '{"name":"evil"}' "$LT"
err_is "ledger admin create ledger" 403 forbidden
req POST "$U/v1/users" '{"name":"evil","password":"p","role":"admin","ledger":"A"}' "$RT"
err_is "reader create user" 403 forbidden
req POST "$U/v1/users" '{"name":"evil","password":"p","role":"admin","ledger":"A"}' "$WT"
err_is "writer create user" 403 forbidden
req POST "$U/v1/users" '{"name":"evil","password":"p","role":"admin","ledger":"B"}' "$LT"
err_is "ledger admin of A creates user on B" 403 forbidden
req POST "$U/v1/users" '{"name":"evil","password":"p","role":"admin","ledger":"*"}' "$LT"
err_is "ledger admin of A grants *" 403 forbidden
req POST "$U/v1/users" '{"name":"rd","role":"admin","ledger":"A"}' "$RT"
err_is "reader promotes itself" 403 forbidden
req GET "$U/v1/ledgers/B" "" "$RT"
err_is "reader describe B (no role: as if absent)" 404 not_found
req GET "$U/v1/ledgers/B/get?key=k" "" "$WT"
err_is "writer of A reads B (no role on B: as if absent)" 404 not_found
req POST "$U/v1/ledgers/B/set" '{"entries":[{"key":"k","value":"evil"}]}' "$WT"
err_is "writer of A writes B (no role on B: as if absent)" 404 not_found
req GET "$U/v1/ledgers/B/checkpoint" "" "$RT"
err_is "reader checkpoint of B (no role on B: as if absent)" 404 not_found
M_EXIST=$(jq_py 'j["error"]["message"].replace("B", "X")')
req GET "$U/v1/ledgers/X/checkpoint" "" "$RT"
check_eq "no role and no ledger answer alike" "$M_EXIST" "$(jq_py 'j["error"]["message"]')"
CODE=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: bearer $RT" "$U/v1/ledgers/A/state")
check_eq "the Bearer scheme in any case (RFC 7235)" 200 "$CODE"
req GET "$U/v1/ledgers/A/get?key=k&key=j" "" "$RT"
err_is "a query parameter given twice" 400 bad_request
check_match "... named in the message" 'query parameter .*key.* given twice' "$BODY"
req GET "$U/v1/ledgers/A/get?$(printf 'x%d=1&' $(seq 17))key=k" "" "$RT"
err_is "more than 16 query parameters" 400 bad_request
CT=$(curl -s -o /dev/null -w '%{content_type}' -X POST -H "Authorization: Bearer $RT" -H 'Content-Type: application/json' \
    -H 'Accept: application/vnd.tally.bundles;q=0, application/json' --data-binary '{"keys":["k"]}' "$U/v1/ledgers/A/verified/getmany")
check_match "Accept with the bundle type at q=0: JSON" '^application/json' "$CT"
CT=$(curl -s -o /dev/null -w '%{content_type}' -X POST -H "Authorization: Bearer $RT" -H 'Content-Type: application/json' \
    -H 'Accept: application/json, application/vnd.tally.bundles' --data-binary '{"keys":["k"]}' "$U/v1/ledgers/A/verified/getmany")
check_match "Accept listing the bundle type: binary" '^application/vnd.tally.bundles' "$CT"
req POST "$U/v1/ledgers/A/set" '{"entries":[{"key":"k","value":"evil"}]}'
err_is "set without token" 401 unauthorized
req POST "$U/v1/ledgers/A/set" '{"entries":[{"key":"k","value":"evil"}]}' "bogus"
err_is "set with bogus token" 401 unauthorized
req POST "$U/v1/users" '{"name":"evil","password":"p","role":"admin","ledger":"*"}'
err_is "create user without token" 401 unauthorized
snapshot
check_eq "forbidden/unauthenticated calls changed nothing" "$S0" "$SNAP"
req GET "$U/v1/ledgers/evil" "" "$AT"
check_eq "no ledger 'evil' created" 404 "$CODE"
check_eq "user 'evil' cannot log in" "" "$(login "$U" evil p)"

# the ledger admin may create users on its ledger
req POST "$U/v1/users" '{"name":"la2","password":"la2-pw","role":"reader","ledger":"A"}' "$LT"
check_eq "ledger admin creates reader on A" 201 "$CODE"

section "the last global admin"
# Taking admin on "*" from the only user who holds it is refused (409
# last_admin), by every role that is not admin; nothing is committed.
for r in '' none writer reader auditor; do
    req POST "$U/v1/users" '{"name":"admin","role":"'"$r"'","ledger":"*"}' "$AT"
    err_is "the only global admin loses admin on * (role '$r')" 409 last_admin
done
req POST "$U/v1/ledgers" '{"name":"stilladmin"}' "$AT"
check_eq "after the refusals admin still creates ledgers" 201 "$CODE"
req POST "$U/v1/users" '{"name":"admin","role":"reader","ledger":"A"}' "$AT"
check_eq "a role on one ledger for the global admin is still granted" 201 "$CODE"
req POST "$U/v1/users" '{"name":"admin","role":"admin","ledger":"*"}' "$AT"
check_eq "admin on * granted again to its holder" 201 "$CODE"
req POST "$U/v1/users" '{"name":"ga2","password":"ga2-secret-pw","role":"admin","ledger":"*"}' "$AT"
check_eq "a second global admin" 201 "$CODE"
GT=$(login "$U" ga2 ga2-secret-pw)
req POST "$U/v1/users" '{"name":"admin","role":"","ledger":"*"}' "$GT"
check_eq "with two global admins one may revoke the other" '201 ' "$CODE $(jq_py 'j["role"]')"
req POST "$U/v1/ledgers" '{"name":"nolonger"}' "$AT"
err_is "the revoked admin no longer creates ledgers" 403 forbidden
req POST "$U/v1/users" '{"name":"ga2","role":"writer","ledger":"*"}' "$GT"
err_is "the remaining global admin cannot demote itself" 409 last_admin
req POST "$U/v1/users" '{"name":"admin","role":"admin","ledger":"*"}' "$GT"
check_eq "admin restored by ga2" 201 "$CODE"
req POST "$U/v1/users" '{"name":"ga2","role":"","ledger":"*"}' "$AT"
check_eq "ga2 revoked by admin" 201 "$CODE"
req POST "$U/v1/users" '{"name":"admin","role":"","ledger":"*"}' "$AT"
err_is "admin is the last global admin again" 409 last_admin
req POST "$U/v1/ledgers" '{"name":"adminagain"}' "$AT"
check_eq "admin creates ledgers again" 201 "$CODE"

section "rate limit"
for i in 1 2 3 4 5; do
    req POST "$U/v1/login" '{"user":"rl","password":"wrong'$i'"}'
    check_eq "bad login $i of rl" 401 "$CODE"
done
req POST "$U/v1/login" '{"user":"rl","password":"wrong6"}'
err_is "6th bad login" 429 rate_limited
req POST "$U/v1/login" '{"user":"rl","password":"rl-secret-pw"}'
err_is "right password after 5 failures (rate limited)" 429 rate_limited
check_ne "other users are not rate limited" "" "$(login "$U" rd rd-secret-pw)"

section "key-value"
req GET "$U/v1/ledgers/A/checkpoint" "" "$RT"
check_eq "checkpoint of empty ledger" 200 "$CODE"
CP0="$BODY"
check_eq "checkpoint size 0 verifies" '{"size": 0, "root": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}' \
    "$(tv_note "$CP0")"

req POST "$U/v1/ledgers/A/set" '{"entries":[{"key":"k","value":"v1"}]}' "$WT"
check_eq "writer set tx 1" '200 {"tx": 1}' "$CODE $(jq_py 'j')"
req POST "$U/v1/ledgers/A/set" '{"entries":[{"key":"k","value":"v2"},{"key":"j","value":"x"},{"key":"m","value":"mm"}],"meta":"batch"}' "$WT"
check_eq "writer set tx 2 (3 entries, meta)" '200 {"tx": 2}' "$CODE $(jq_py 'j')"
req GET "$U/v1/ledgers/A/checkpoint" "" "$RT"
CP2="$BODY"
R2=$(BODY=$(tv_note "$CP2") jq_py 'j["root"]')
sleep 0.01
req POST "$U/v1/ledgers/A/set" '{"entries":[{"key":"k","value":"v3"}]}' "$WT"
check_eq "set tx 3" '200 {"tx": 3}' "$CODE $(jq_py 'j')"
req POST "$U/v1/ledgers/A/del" '{"key":"j"}' "$WT"
check_eq "del j tx 4" '200 {"tx": 4}' "$CODE $(jq_py 'j')"
req POST "$U/v1/ledgers/A/del" '{"key":"j"}' "$WT"
err_is "del absent key" 404 not_found
req POST "$U/v1/ledgers/A/set" '{"entries":[{"key_hex":"ff00","value_hex":"fe"}]}' "$WT"
check_eq "set hex key tx 5" '200 {"tx": 5}' "$CODE $(jq_py 'j')"

req GET "$U/v1/ledgers/A/get?key=k" "" "$RT"
check_eq "get latest keys" '["key", "rev", "ts", "tx", "value"]' "$(jq_py 'sorted(j)')"
check_eq "get latest" 'k v3 3 3' "$(jq_py '" ".join([j["key"], j["value"], str(j["tx"]), str(j["rev"])])')"
TS1=""
req GET "$U/v1/ledgers/A/get?key=k&rev=1" "" "$RT"
check_eq "get rev=1" 'v1 1 1' "$(jq_py '" ".join([j["value"], str(j["tx"]), str(j["rev"])])')"
TS1=$(jq_py 'j["ts"]')
check_match "ts RFC 3339 UTC" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}(\.[0-9]+)?Z$' "$TS1"
req GET "$U/v1/ledgers/A/get?key=k&tx=2" "" "$RT"
check_eq "get tx=2" 'v2 2 2' "$(jq_py '" ".join([j["value"], str(j["tx"]), str(j["rev"])])')"
req GET "$U/v1/ledgers/A/get?key=k&at=$(python3 -c 'import urllib.parse,sys;print(urllib.parse.quote(sys.argv[1]))' "$TS1")" "" "$RT"
check_eq "get at=ts(tx1)" 'v1 1' "$(jq_py '" ".join([j["value"], str(j["tx"])])')"
req GET "$U/v1/ledgers/A/get?key=k&at=2000-01-01T00:00:00Z" "" "$RT"
err_is "get at before the first tx" 404 not_found
req GET "$U/v1/ledgers/A/get?key=k&rev=9" "" "$RT"
err_is "get unknown rev" 404 not_found
req GET "$U/v1/ledgers/A/get?key=nokey" "" "$RT"
err_is "get unknown key" 404 not_found
req GET "$U/v1/ledgers/A/get?key=j" "" "$RT"
err_is "get deleted key" 404 not_found
req GET "$U/v1/ledgers/A/get?key=k&tx=2&rev=1" "" "$RT"
err_is "get with tx and rev" 400 bad_request
req GET "$U/v1/ledgers/A/get" "" "$RT"
err_is "get without key" 400 bad_request
req GET "$U/v1/ledgers/A/get?key=k&tx=abc" "" "$RT"
err_is "get tx=abc" 400 bad_request
req GET "$U/v1/ledgers/nosuch/get?key=k" "" "$AT"
err_is "get on unknown ledger" 404 not_found
req GET "$U/v1/ledgers/A/get?key_hex=ff00" "" "$RT"
check_eq "get key_hex (non-UTF-8 key and value)" '["key_hex", "rev", "ts", "tx", "value_hex"] ff00 fe' "$(jq_py 'str(sorted(j)).replace(chr(39), chr(34)) + " " + j.get("key_hex","") + " " + j.get("value_hex","")')"

req GET "$U/v1/ledgers/A/history?key=k" "" "$RT"
check_eq "history keys" '["key", "revisions", "total"]' "$(jq_py 'sorted(j)')"
check_eq "history k" 'k 3 [[1, 1, "v1", false], [2, 2, "v2", false], [3, 3, "v3", false]]' "$(jq_py 'j["key"] + " " + str(j["total"]) + " " + json.dumps([[r["rev"],r["tx"],r["value"],r["deleted"]] for r in j["revisions"]])')"
check_eq "history revision keys" '["deleted", "rev", "ts", "tx", "value"]' "$(jq_py 'sorted(j["revisions"][0])')"
ORDER=$(jq_py 'list(j["revisions"][0])')
[ "$ORDER" = '["rev", "tx", "value", "deleted", "ts"]' ] || echo "NOTE: history revision key order is $ORDER, docs/API.md lists rev,tx,value,deleted,ts"
req GET "$U/v1/ledgers/A/history?key=k&start=2&limit=1" "" "$RT"
check_eq "history paging" '3 [2]' "$(jq_py 'str(j["total"]) + " " + json.dumps([r["rev"] for r in j["revisions"]])')"
req GET "$U/v1/ledgers/A/history?key=j" "" "$RT"
check_eq "history of deleted key" '[[1, 2, false], [2, 4, true]]' "$(jq_py 'json.dumps([[r["rev"],r["tx"],r["deleted"]] for r in j["revisions"]])')"
req GET "$U/v1/ledgers/A/history?key=nokey" "" "$RT"
err_is "history unknown key" 404 not_found

req GET "$U/v1/ledgers/A/scan?prefix=" "" "$RT"
check_eq "scan keys" '["keys", "next", "prefix", "tx"]' "$(jq_py 'sorted(j)')"
check_eq "scan latest (j deleted)" '5 [["k", "v3", 3, 3], ["m", "mm", 2, 1]] None' "$(jq_py 'str(j["tx"]) + " " + json.dumps([[k.get("key"),k.get("value"),k["tx"],k["rev"]] for k in j["keys"] if "key" in k]) + " " + str(j["next"])')"
req GET "$U/v1/ledgers/A/scan?prefix=&tx=2" "" "$RT"
check_eq "scan tx=2" '2 ["j", "k", "m"] ["x", "v2", "mm"]' "$(jq_py 'str(j["tx"]) + " " + json.dumps([k["key"] for k in j["keys"]]) + " " + json.dumps([k["value"] for k in j["keys"]])')"
req GET "$U/v1/ledgers/A/scan?prefix=&tx=2&limit=1" "" "$RT"
check_eq "scan limit=1" '["j"] j' "$(jq_py 'json.dumps([k["key"] for k in j["keys"]]) + " " + str(j["next"])')"
req GET "$U/v1/ledgers/A/scan?prefix=&tx=2&limit=2&after=j" "" "$RT"
check_eq "scan after=j" '["k", "m"] None' "$(jq_py 'json.dumps([k["key"] for k in j["keys"]]) + " " + str(j["next"])')"
req GET "$U/v1/ledgers/A/scan?prefix=m" "" "$RT"
check_eq "scan prefix=m" '["m"]' "$(jq_py 'json.dumps([k["key"] for k in j["keys"]])')"

section "conditional writes"
snapshot; S1="$SNAP"
req POST "$U/v1/ledgers/A/set" '{"entries":[{"key":"k","value":"c","if_rev":1}]}' "$WT"
err_is "if_rev stale" 409 conflict
req POST "$U/v1/ledgers/A/set" '{"entries":[{"key":"k","value":"c","if_absent":true}]}' "$WT"
err_is "if_absent on existing key" 409 conflict
req POST "$U/v1/ledgers/A/set" '{"entries":[{"key":"new1","value":"n"},{"key":"k","value":"c","if_rev":2}]}' "$WT"
err_is "two entries, one precondition fails" 409 conflict
req POST "$U/v1/ledgers/A/del" '{"key":"k","if_rev":1}' "$WT"
err_is "del if_rev stale" 409 conflict
req POST "$U/v1/ledgers/A/set" '{"entries":[{"key":"k","value":"c"}' "$WT"
err_is "set malformed JSON" 400 bad_request
req POST "$U/v1/ledgers/A/set" 'not json at all' "$WT"
err_is "set not JSON" 400 bad_request
req POST "$U/v1/ledgers/A/set" '{"entries":[]}' "$WT"
err_is "set no entries" 400 bad_request
req POST "$U/v1/ledgers/A/set" '{"entries":[{"key":"k"}]}' "$WT"
err_is "set entry without value" 400 bad_request
req POST "$U/v1/ledgers/A/set" '{"entries":[{"key":"","value":"x"}]}' "$WT"
err_is "set empty key" 400 bad_request
req POST "$U/v1/ledgers/A/set" '{"entries":[{"key":"d","value":"1"},{"key":"d","value":"2"}]}' "$WT"
err_is "set duplicate key in one tx" 400 bad_request
req POST "$U/v1/ledgers/A/set" '{"entries":[{"key":"k","value_hex":"zz"}]}' "$WT"
err_is "set bad value_hex" 400 bad_request
req POST "$U/v1/ledgers/A/set" "{\"entries\":[{\"key\":\"$(head -c 1025 /dev/zero | tr '\0' a)\",\"value\":\"x\"}]}" "$WT"
err_is "set 1025-byte key" 413 too_large
python3 -c 'import json; print(json.dumps({"entries":[{"key":"big","value":"x"*(2<<20)}]}))' >"$W/big2m.json"
req POST "$U/v1/ledgers/A/set" "@$W/big2m.json" "$WT"
err_is "set 2 MiB value" 413 too_large
python3 -c '
import sys
with open(sys.argv[1], "w") as f:
    f.write("{\"entries\":[{\"key\":\"huge\",\"value\":\"")
    f.write("y" * (65 << 20))
    f.write("\"}]}")' "$W/big65m.json"
req POST "$U/v1/ledgers/A/set" "@$W/big65m.json" "$WT"
err_is "set 65 MiB body" 413 too_large
rm -f "$W/big65m.json" "$W/big2m.json"
req POST "$U/v1/ledgers/nosuch/set" '{"entries":[{"key":"k","value":"x"}]}' "$AT"
err_is "set on unknown ledger" 404 not_found
snapshot
check_eq "failed writes changed nothing" "$S1" "$SNAP"
req POST "$U/v1/ledgers/A/set" '{"entries":[{"key":"k","value":"v4","if_rev":3},{"key":"n","value":"nn","if_absent":true}]}' "$WT"
check_eq "conditional set ok (tx 6)" '200 {"tx": 6}' "$CODE $(jq_py 'j')"
req GET "$U/v1/ledgers/A/get?key=k" "" "$RT"
check_eq "after conditional set" 'v4 4' "$(jq_py 'j["value"] + " " + str(j["rev"])')"

section "unknown fields"
# A field an endpoint does not know is refused (400, the message names it),
# never ignored: a misspelled condition would make the write unconditional.
msg_is() { # what, expected message
    check_eq "$1: message" "$2" "$(jq_py 'j["error"]["message"]')"
}
snapshot; S2="$SNAP"
req POST "$U/v1/ledgers/A/set" '{"entries":[{"key":"k","value":"u","ifRev":1}]}' "$WT"
err_is "set: entry field ifRev" 400 bad_request
msg_is "set: entry field ifRev" 'entry 0: unknown field "ifRev"'
req POST "$U/v1/ledgers/A/set" '{"entries":[{"key":"k","value":"u","if_rev":4},{"key":"q","value":"u","if_absent":true,"extra":1}]}' "$WT"
err_is "set: second entry field extra" 400 bad_request
msg_is "set: second entry field extra" 'entry 1: unknown field "extra"'
req POST "$U/v1/ledgers/A/set" '{"entries":[{"key":"k","value":"u"}],"Meta":"m"}' "$WT"
err_is "set: body field Meta" 400 bad_request
msg_is "set: body field Meta" 'unknown field "Meta"'
req POST "$U/v1/ledgers/A/set" '{"entries":[{"key":"k","value":"u"}],"trusted":6}' "$WT"
err_is "set: verified/set's trusted is not set's" 400 bad_request
req POST "$U/v1/ledgers/A/del" '{"key":"k","if_absent":true}' "$WT"
err_is "del: field if_absent" 400 bad_request
msg_is "del: field if_absent" 'unknown field "if_absent"'
req POST "$U/v1/ledgers/A/del" '{"key":"k","ifRev":9}' "$WT"
err_is "del: field ifRev" 400 bad_request
req POST "$U/v1/ledgers/A/verified/set" '{"entries":[{"key":"k","value":"u"}],"trusted":6,"trustedSize":6}' "$WT"
err_is "verified/set: body field trustedSize" 400 bad_request
msg_is "verified/set: body field trustedSize" 'unknown field "trustedSize"'
req POST "$U/v1/ledgers/A/verified/set" '{"entries":[{"key":"k","value":"u","if_revision":4}],"trusted":6}' "$WT"
err_is "verified/set: entry field if_revision" 400 bad_request
msg_is "verified/set: entry field if_revision" 'entry 0: unknown field "if_revision"'
LONGF=$(printf 'ä%.0s' $(seq 40))
req POST "$U/v1/ledgers/A/set" '{"entries":[{"key":"k","value":"u","'"$LONGF"'":1}]}' "$WT"
err_is "set: an 80-byte UTF-8 field name" 400 bad_request
msg_is "set: an 80-byte UTF-8 field name, cut at a character boundary" "entry 0: unknown field \"$(printf 'ä%.0s' $(seq 32))...\""
snapshot
check_eq "unknown fields in writes changed nothing" "$S2" "$SNAP"
req POST "$U/v1/ledgers/A/verified/getmany" '{"keys":["k"],"trusted":2}' "$RT"
err_is "verified/getmany: body field trusted (it is a query parameter)" 400 bad_request
msg_is "verified/getmany: body field trusted" 'unknown field "trusted"'
req POST "$U/v1/login" '{"user":"rd","password":"rd-secret-pw","otp":"123"}'
err_is "login: field otp" 400 bad_request
msg_is "login: field otp" 'unknown field "otp"'
req POST "$U/v1/users" '{"name":"uf1","password":"uf1-secret-pw","role":"reader","ledger":"A","roles":"admin"}' "$AT"
err_is "users: field roles" 400 bad_request
msg_is "users: field roles" 'unknown field "roles"'
check_eq "users: the refused user cannot log in" "" "$(login "$U" uf1 uf1-secret-pw)"
req POST "$U/v1/ledgers" '{"name":"uf2","id":"00"}' "$AT"
err_is "ledgers: field id" 400 bad_request
msg_is "ledgers: field id" 'unknown field "id"'
req GET "$U/v1/ledgers/uf2" "" "$AT"
check_eq "ledgers: the refused ledger does not exist" 404 "$CODE"
UFT=$(login "$U" rd rd-secret-pw)
req POST "$U/v1/logout" '{"token":"'"$RT"'"}' "$UFT"
err_is "logout: field token" 400 bad_request
req GET "$U/v1/ledgers" "" "$UFT"
check_eq "logout refused: the session goes on" 200 "$CODE"
req POST "$U/v1/logout" '' "$UFT"
check_eq "logout without a body" 200 "$CODE"

section "tx / state / proofs / checkpoint"
req GET "$U/v1/ledgers/A/tx/2" "" "$RT"
check_eq "tx keys (tx 2 has metadata)" '["entries", "entries_root", "entry_count", "hash", "meta", "prev_hash", "ts", "tx"]' "$(jq_py 'sorted(j)')"
check_eq "tx 2: its metadata" 'batch' "$(jq_py 'j["meta"]')"
check_eq "tx 2 entries" '3 [[0, 0, "k", "v2", false], [1, 0, "j", "x", false], [2, 0, "m", "mm", false]]' "$(jq_py 'str(j["entry_count"]) + " " + json.dumps([[e["index"],e["ns"],e["key"],e["value"],e["deleted"]] for e in j["entries"]])')"
check_eq "tx entry keys" '["deleted", "index", "key", "leaf_hash", "ns", "value"]' "$(jq_py 'sorted(j["entries"][0])')"
check_eq "tx 2 leaf hashes and entries root (FORMAT.md 3.1/3.2)" "True" "$(printf '%s' "$BODY" | python3 -c '
import json, sys, hashlib
exec(open("'"$W"'/tv.py").read().split("def main")[0])
j = json.load(sys.stdin); ld = []
for e in j["entries"]:
    k, v = e["key"].encode(), e["value"].encode()
    d = bytes([e["ns"], 1 if e["deleted"] else 0]) + len(k).to_bytes(2,"little") + (0).to_bytes(4,"little") + len(v).to_bytes(4,"little") + k + H(v)
    assert leaf(d).hex() == e["leaf_hash"], e
    ld.append(d)
print(mth(ld).hex() == j["entries_root"])' 2>&1)"
TX2HASH=$(jq_py 'j["hash"]')
req GET "$U/v1/ledgers/A/tx/4" "" "$RT"
check_eq "tx 4 is a tombstone" 'j True' "$(jq_py 'j["entries"][0]["key"] + " " + str(j["entries"][0]["deleted"])')"
req GET "$U/v1/ledgers/A/tx/99" "" "$RT"
err_is "tx beyond the ledger" 404 not_found
req GET "$U/v1/ledgers/A/tx/0" "" "$RT"
err_is "tx 0 (well-formed, no such transaction)" 404 not_found
for t in abc "" -1 18446744073709551616 1x; do
    req GET "$U/v1/ledgers/A/tx/$t" "" "$RT"
    err_is "tx/'$t' (not a decimal number)" 400 bad_request
    req GET "$U/v1/ledgers/A/verified/tx/$t" "" "$RT"
    err_is "verified/tx/'$t' (not a decimal number)" 400 bad_request
done
req GET "$U/v1/ledgers/A/tx/1/x" "" "$RT"
err_is "tx/1/x (no such endpoint)" 404 not_found
req GET "$U/v1/ledgers/A/state" "" "$RT"
check_eq "state keys" '["root", "tx"]' "$(jq_py 'sorted(j)')"
check_eq "state tx" 6 "$(jq_py 'j["tx"]')"
ROOT6=$(jq_py 'j["root"]')
req GET "$U/v1/ledgers/A" "" "$RT"
check_eq "describe = state" "6 $ROOT6" "$(jq_py 'str(j["size"]) + " " + j["root"]')"
req GET "$U/v1/ledgers/A/proof/inclusion?tx=2&size=6" "" "$RT"
check_eq "inclusion keys" '["index", "leaf_hash", "proof", "root", "size", "tx"]' "$(jq_py 'sorted(j)')"
check_eq "inclusion header" "1 6 2 $TX2HASH" "$(jq_py '" ".join(map(str,[j["index"],j["size"],j["tx"],j["leaf_hash"]]))')"
check_eq "inclusion proof verifies (RFC 9162)" "$ROOT6" "$(jq_py 'tv(T_incl, j)')"
req GET "$U/v1/ledgers/A/proof/inclusion?tx=7&size=6" "" "$RT"
err_is "inclusion: tx beyond the ledger" 404 not_found
req GET "$U/v1/ledgers/A/proof/inclusion?tx=2&size=99" "" "$RT"
err_is "inclusion: size beyond the ledger" 404 not_found
req GET "$U/v1/ledgers/A/proof/inclusion?tx=3&size=2" "" "$RT"
err_is "inclusion: tx > size, both within the ledger" 400 bad_request
req GET "$U/v1/ledgers/A/proof/inclusion?tx=1&size=0" "" "$RT"
err_is "inclusion: size 0" 400 bad_request
for q in "tx=x" "tx=0" "tx=1&size=x" ""; do
    req GET "$U/v1/ledgers/A/proof/inclusion?$q" "" "$RT"
    err_is "inclusion: '$q' (malformed, 0 or missing)" 400 bad_request
done
req GET "$U/v1/ledgers/A/proof/consistency?old=2&size=6" "" "$RT"
check_eq "consistency keys" '["old", "old_root", "proof", "root", "size"]' "$(jq_py 'sorted(j)')"
check_eq "consistency roots" "$R2 $ROOT6" "$(jq_py 'j["old_root"] + " " + j["root"]')"
check_eq "consistency proof verifies (RFC 9162)" ok "$(jq_py 'tv(T_cons, j)')"
req GET "$U/v1/ledgers/A/proof/consistency?old=7&size=6" "" "$RT"
err_is "consistency: old beyond the ledger" 404 not_found
req GET "$U/v1/ledgers/A/proof/consistency?old=5&size=4" "" "$RT"
err_is "consistency: old > size, both within the ledger" 400 bad_request
req GET "$U/v1/ledgers/A/proof/consistency?old=2&size=99" "" "$RT"
err_is "consistency: size beyond the ledger" 404 not_found
for q in "old=x" "old=0" "old=1&size=x" ""; do
    req GET "$U/v1/ledgers/A/proof/consistency?$q" "" "$RT"
    err_is "consistency: '$q' (malformed, 0 or missing)" 400 bad_request
done
req GET "$U/v1/ledgers/A/checkpoint" "" "$RT"
check_eq "checkpoint status" 200 "$CODE"
check_match "checkpoint content type" '^text/plain' "$CTYPE"
check_eq "checkpoint verifies (Ed25519, pinned vkey, origin)" "{\"size\": 6, \"root\": \"$ROOT6\"}" "$(tv_note "$BODY")"
CP6="$BODY"
check_eq "checkpoint format" "tally.local/ledger/$AID|6||" "$(printf '%s\n' "$CP6" | sed -n '1p;2p;4p' | tr '\n' '|')"
check_eq "checkpoint signature line" "1" "$(printf '%s\n' "$CP6" | grep -c '^— tally\.local [A-Za-z0-9+/=]*$')"
check_match "tv.py rejects an edited checkpoint" '^BAD: ' "$(tv_note "$(printf '%s\n' "$CP6" | sed '2s/6/5/')")"

section "proof bundles"
req GET "$U/v1/ledgers/A/verified/get?key=k&trusted=2" "" "$RT"
check_eq "verified/get status" 200 "$CODE"
check_eq "verified/get keys" '["checkpoint", "consistency", "entry", "entry_proof", "key", "rev", "ts", "tx", "tx_header_hex", "tx_proof", "value"]' "$(jq_py 'sorted(j)')"
check_eq "verified/get sub-objects" '["header_hex", "index", "meta_hex"] ["index", "proof", "size"] ["index", "proof", "size"] ["old", "proof", "size"]' "$(jq_py '" ".join(json.dumps(sorted(j[x])) for x in ("entry","entry_proof","tx_proof","consistency"))')"
check_eq "verified/get bundle verifies (hashlib, API.md rules)" '{"size": 6, "root": "'"$ROOT6"'", "tx": 6, "value": "v4"}' "$(tv_bundle 2 "$R2")"
req GET "$U/v1/ledgers/A/verified/get?key=m&trusted=6" "" "$RT"
check_eq "verified/get m (entry 2 of 3) verifies" '{"size": 6, "root": "'"$ROOT6"'", "tx": 2, "value": "mm"}' "$(tv_bundle 6 "$ROOT6")"
req GET "$U/v1/ledgers/A/verified/get?key=k&rev=2&trusted=2" "" "$RT"
check_eq "verified/get rev=2 verifies" '{"size": 6, "root": "'"$ROOT6"'", "tx": 2, "value": "v2"}' "$(tv_bundle 2 "$R2")"
req GET "$U/v1/ledgers/A/verified/get?key=k&tx=1&trusted=0" "" "$RT"
check_eq "verified/get tx=1 trusted=0 verifies" '{"size": 6, "root": "'"$ROOT6"'", "tx": 1, "value": "v1"}' "$(tv_bundle 0 "")"
req GET "$U/v1/ledgers/A/verified/get?key_hex=ff00&trusted=6" "" "$RT"
check_eq "verified/get hex key: key_hex/value_hex" "ff00 fe 5" "$(jq_py 'j.get("key_hex","?") + " " + j.get("value_hex","?") + " " + str(j["tx"])')"
check_match "verified/get hex bundle verifies" '"tx": 5' "$(tv_bundle 6 "$ROOT6")"
req GET "$U/v1/ledgers/A/verified/get?key=k&trusted=99" "" "$RT"
err_is "verified/get trusted > size" 400 bad_request
req GET "$U/v1/ledgers/A/verified/get?key=nokey&trusted=6" "" "$RT"
err_is "verified/get unknown key" 404 not_found

section "batched verified reads"
req POST "$U/v1/ledgers/A/verified/getmany?trusted=2" '{"keys":["k","nokey","m"]}' "$RT"
check_eq "verified/getmany status" 200 "$CODE"
check_eq "verified/getmany keys" '["checkpoint", "consistency", "results"]' "$(jq_py 'sorted(j)')"
check_eq "verified/getmany: results in the order asked, the absent one not_found" 'k nokey:not_found m' "$(jq_py '" ".join(r["key"] + (":" + r["error"]["code"] if "error" in r else "") for r in j["results"])')"
check_eq "verified/getmany: each result verifies as a bundle under the one checkpoint" '{"size": 6, "root": "'"$ROOT6"'", "tx": 6, "value": "v4"} | {"size": 6, "root": "'"$ROOT6"'", "tx": 2, "value": "mm"}' "$(jq_py '" | ".join(tv(T_bundle, dict(r, checkpoint=j["checkpoint"], consistency=j["consistency"]), "'"$VKEY"'", "'"$(ORG)"'", 2, "'"$R2"'") for r in j["results"] if "error" not in r)')"
req POST "$U/v1/ledgers/A/verified/getmany?tx=1&trusted=6" '{"keys_hex":["6b","ff00"]}' "$RT"
check_eq "verified/getmany tx=1, hex keys: k as of tx 1, ff00 not yet written; no consistency at trusted=size" 'v1 ff00:not_found False' "$(jq_py '" ".join(r.get("value", r.get("key_hex", "?") + ":" + r.get("error", {}).get("code", "")) for r in j["results"]) + " " + str("consistency" in j)')"
GMB=$(curl -s -m 60 -o "$W/gm.bin" -w '%{http_code} %{content_type}' -H "Authorization: Bearer $RT" \
    -H 'Accept: application/vnd.tally.bundles' -H 'Content-Type: application/json' \
    --data-binary '{"keys":["k","nokey","m"]}' "$U/v1/ledgers/A/verified/getmany?trusted=2")
check_eq "verified/getmany binary: status and content type" "200 application/vnd.tally.bundles" "$GMB"
check_eq "verified/getmany binary: magic, 3 results, statuses found/absent/found, ends exactly" "TVB1 3 0 1 0 end" "$(python3 - "$W/gm.bin" <<'PYEOF'
import struct, sys
b = open(sys.argv[1], "rb").read()
n, c = struct.unpack_from("<II", b, 4)
o = 12 + c
old = struct.unpack_from("<Q", b, o)[0]; o += 8
o += 1 + 32 * b[o]
out = [b[:4].decode(), str(n)]
for _ in range(n):
    st, _r, k = struct.unpack_from("<BBH", b, o); o += 4 + k
    out.append(str(st))
    if st: continue
    o += 8 + 4 + 12  # rev, entry index, entry header
    kl, ml, vl = struct.unpack_from("<HII", b, o - 10)
    o += ml + vl
    o += 1 + 32 * b[o]
    h = struct.unpack_from("<I", b, o)[0]; o += 4 + h
    o += 1 + 32 * b[o]
out.append("end" if o == len(b) else "extra %d" % (len(b) - o))
print(" ".join(out))
PYEOF
)"
req POST "$U/v1/ledgers/A/verified/getmany" '{"keys":[]}' "$RT"
err_is "verified/getmany without keys" 400 bad_request
req POST "$U/v1/ledgers/A/verified/getmany" '{"keys":"k"}' "$RT"
err_is "verified/getmany keys not an array" 400 bad_request
req POST "$U/v1/ledgers/A/verified/getmany" '{"keys":["k"],"keys_hex":["6b"]}' "$RT"
err_is "verified/getmany keys and keys_hex" 400 bad_request
req POST "$U/v1/ledgers/A/verified/getmany" '{"keys":["k"' "$RT"
err_is "verified/getmany malformed JSON" 400 bad_request
req POST "$U/v1/ledgers/A/verified/getmany?rev=1" '{"keys":["k"]}' "$RT"
err_is "verified/getmany rev= (per key)" 400 bad_request
req POST "$U/v1/ledgers/A/verified/getmany?trusted=99" '{"keys":["k"]}' "$RT"
err_is "verified/getmany trusted > size" 400 bad_request
python3 -c 'import json; print(json.dumps({"keys": ["k%d" % i for i in range(1001)]}))' >"$W/gm1001.json"
req POST "$U/v1/ledgers/A/verified/getmany" "@$W/gm1001.json" "$RT"
err_is "verified/getmany 1001 keys" 413 too_large
req POST "$U/v1/ledgers/A/verified/getmany" "{\"keys\":[\"k\",\"$(head -c 1025 /dev/zero | tr '\0' a)\"]}" "$RT"
err_is "verified/getmany: a 1025-byte key (as set and get)" 413 too_large
req POST "$U/v1/ledgers/A/verified/getmany" "{\"keys_hex\":[\"$(head -c 1025 /dev/zero | od -An -tx1 -v | tr -d ' \n')\"]}" "$RT"
err_is "verified/getmany: a 1025-byte hex key" 413 too_large
req POST "$U/v1/ledgers/A/verified/getmany" '{"keys":["k",""]}' "$RT"
err_is "verified/getmany: an empty key" 400 bad_request
req POST "$U/v1/ledgers/A/verified/getmany" '{"keys_hex":["6b6"]}' "$RT"
err_is "verified/getmany: odd-length hex" 400 bad_request
req POST "$U/v1/ledgers/A/verified/getmany" '{"keys":["k"]}' ""
err_is "verified/getmany unauthenticated" 401 unauthorized
req POST "$U/v1/ledgers/nosuch/verified/getmany" '{"keys":["k"]}' "$RT"
err_is "verified/getmany unknown ledger" 404 not_found
python3 -c 'import json; print(json.dumps({"entries": [{"key": "big%02d" % i, "value": "x" * 1048576} for i in range(33)]}))' >"$W/big33.json"
req POST "$U/v1/ledgers/B/set" "@$W/big33.json" "$AT"
check_eq "33 values of 1 MiB in one transaction (ledger B)" 200 "$CODE"
python3 -c 'import json; print(json.dumps({"keys": ["big%02d" % i for i in range(33)]}))' >"$W/big33k.json"
req POST "$U/v1/ledgers/B/verified/getmany" "@$W/big33k.json" "$AT"
check_eq "verified/getmany: a 33 MiB JSON answer (under 64 MiB) is given" "200 33" "$CODE $(jq_py 'len(j["results"])')"
GMB=$(curl -s -m 60 -o "$W/gm.bin" -w '%{http_code} %{size_download}' -H "Authorization: Bearer $AT" \
    -H 'Accept: application/vnd.tally.bundles' -H 'Content-Type: application/json' \
    --data-binary "@$W/big33k.json" "$U/v1/ledgers/B/verified/getmany")
check_match "verified/getmany: the same keys in binary (33 MiB)" '^200 3[0-9]{7}$' "$GMB"
rm -f "$W/big33.json" "$W/gm.bin"
# Binary batches (API.md "Binary batches") for the bounds below.
cat >"$W/tb01.py" <<'PYEOF'
import struct, sys
n, byte, vlen, prefix, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
with open(out, "wb") as f:
    f.write(b"TB01" + struct.pack("<II", n, 0))
    v = bytes([byte]) * vlen
    for i in range(n):
        k = ("%s%06d" % (prefix, i)).encode()
        f.write(struct.pack("<BBHIIQ", 0, 0, len(k), vlen, 0, 0) + k + v)
PYEOF
binset() { # ledger file -> CODE
    CODE=$(curl -s -m 120 -o "$W/resp.body" -w '%{http_code}' -H "Authorization: Bearer $AT" \
        -H 'Content-Type: application/vnd.tally.batch' --data-binary "@$2" "$U/v1/ledgers/$1/set")
}
gm_bin() { # ledger keys-json -> "CODE SIZE"
    curl -s -m 120 -o "$W/gm.bin" -w '%{http_code} %{size_download}' -H "Authorization: Bearer $AT" \
        -H 'Accept: application/vnd.tally.bundles' -H 'Content-Type: application/json' \
        --data-binary "$2" "$U/v1/ledgers/$1/verified/getmany"
}
# JSON escapes: 11 values of 1 MiB of 0x01 are 66 MiB as JSON strings (\u0001)
python3 "$W/tb01.py" 11 1 1048576 ctl "$W/ctl.bin"
binset B "$W/ctl.bin"
check_eq "11 values of 1 MiB of control bytes (binary batch)" 200 "$CODE"
CTLK='{"keys":["ctl000000","ctl000001","ctl000002","ctl000003","ctl000004","ctl000005","ctl000006","ctl000007","ctl000008","ctl000009","ctl000010"]}'
req POST "$U/v1/ledgers/B/verified/getmany" "$CTLK" "$AT"
err_is "verified/getmany: JSON escapes counted in the 64 MiB bound" 413 too_large
check_match "verified/getmany: the same in binary (11 MiB) is answered" '^200 11[0-9]{6}$' "$(gm_bin B "$CTLK")"
# The proofs' work: 5 transactions of 55 MiB of entries each; keys from all
# five mean hashing 275 MiB (> 256 MiB: 413), from four 220 MiB (answered).
for t in 0 1 2 3 4; do
    python3 "$W/tb01.py" 55 $((65 + t)) 1048576 "w$t-" "$W/w.bin"
    binset B "$W/w.bin"
    [ "$CODE" = 200 ] || bad "55 MiB transaction $t" 200 "$CODE"
done
rm -f "$W/w.bin" "$W/ctl.bin"
req POST "$U/v1/ledgers/B/verified/getmany" '{"keys":["w0-000001","w1-000002","w2-000003","w3-000004","w4-000005"]}' "$AT"
err_is "verified/getmany: proofs that would hash 275 MiB of entries" 413 too_large
check_match "verified/getmany: four of those transactions (220 MiB) are answered" '^200 [0-9]+$' "$(gm_bin B '{"keys":["w0-000001","w1-000002","w2-000003","w3-000004","w3-000009"]}')"
rm -f "$W/gm.bin"
req GET "$U/v1/ledgers/A/verified/tx/2?trusted=2" "" "$RT"
check_eq "verified/tx keys" '["checkpoint", "consistency", "entries", "ts", "tx", "tx_header_hex", "tx_proof"]' "$(jq_py 'sorted(k for k in j)')"
check_eq "verified/tx entry keys" '["header_hex", "index", "key", "meta_hex", "value"]' "$(jq_py 'sorted(j["entries"][0])')"
check_eq "verified/tx 2 verifies (entries root recomputed)" '{"size": 6, "root": "'"$ROOT6"'", "tx": 2, "entries": 3}' "$(tv_bundle 2 "$R2")"
req GET "$U/v1/ledgers/A/verified/tx/4?trusted=6" "" "$RT"
check_eq "verified/tx 4 (tombstone) verifies" '{"size": 6, "root": "'"$ROOT6"'", "tx": 4, "entries": 1}' "$(tv_bundle 6 "$ROOT6")"
req GET "$U/v1/ledgers/A/verified/tx/99?trusted=6" "" "$RT"
err_is "verified/tx beyond the ledger" 404 not_found
req POST "$U/v1/ledgers/A/verified/set" '{"entries":[{"key":"vs","value":"vv"}],"trusted":6}' "$WT"
check_eq "verified/set status" 200 "$CODE"
check_eq "verified/set tx" 7 "$(jq_py 'j["tx"]')"
R7=$(tv_bundle 6 "$ROOT6" '[{"key":"vs","value":"vv"}]')
check_match "verified/set bundle verifies" '"size": 7, .*"tx": 7, "entries": 1' "$R7"
req POST "$U/v1/ledgers/A/verified/set" '{"entries":[{"key":"vs","value":"vv2","if_rev":9}],"trusted":7}' "$WT"
err_is "verified/set precondition" 409 conflict

section "restart and the system ledger"
SYS_PY="$W/sys.py"
cat >"$SYS_PY" <<'PYEOF'
# Parses DIR/system/log/*.seg by docs/FORMAT.md §2 and prints one JSON line per
# entry: {"tx","meta","ns","flags","key","value"}.
import glob, json, os, sys
for seg in sorted(glob.glob(os.path.join(sys.argv[1], "log", "*.seg"))):
    b = open(seg, "rb").read()
    assert b[:8] == b"TALLYSEG", seg
    o = 32
    while o + 32 <= len(b):
        if b[o:o + 4] != b"TXR1": break
        body_len = int.from_bytes(b[o + 4:o + 8], "little")
        tx = int.from_bytes(b[o + 8:o + 16], "little")
        txh_len = int.from_bytes(b[o + 16:o + 20], "little")
        txh = b[o + 32:o + 32 + txh_len]
        meta = txh[93:].decode("utf-8", "replace")
        e = o + 32 + txh_len
        end = o + 32 + body_len
        while e < end:
            ns, fl = b[e], b[e + 1]
            kl = int.from_bytes(b[e + 2:e + 4], "little"); ml = int.from_bytes(b[e + 4:e + 8], "little")
            vl = int.from_bytes(b[e + 8:e + 12], "little")
            k = b[e + 12:e + 12 + kl]; v = b[e + 12 + kl + ml:e + 12 + kl + ml + vl]
            print(json.dumps({"tx": tx, "meta": meta, "ns": ns, "flags": fl, "key": k.decode("utf-8", "replace"),
                              "value": v.decode("utf-8", "replace")}))
            e += 12 + kl + ml + vl
        o = end
PYEOF
python3 "$SYS_PY" "$D/system" >"$W/sys.jsonl" 2>"$W/sys.err" || bad "system ledger log parses (FORMAT.md)" "ok" "$(head -c 300 "$W/sys.err")"
sysq() { BODY="$(cat "$W/sys.jsonl")" jq_py "(lambda rows: $1)([json.loads(l) for l in body.splitlines()])"; }
check_eq "system ledger: namespace of every entry is 1 (TALLY_NS_SYSTEM)" "[1]" "$(sysq 'sorted(set(r["ns"] for r in rows))')"
check_eq "system ledger: ledger/A" "A $AID True" "$(sysq '[(v["name"]+" "+v["id"]+" "+str("created" in v)) for v in [json.loads(r["value"]) for r in rows if r["key"]=="ledger/A"]][0]')"
check_eq "system ledger: ledger/B recorded once" "1" "$(sysq 'sum(1 for r in rows if r["key"]=="ledger/B")')"
check_eq "system ledger: user/rd scrypt record" '["N", "hash", "p", "r", "salt"] 32768 8 1' "$(sysq '(lambda v: json.dumps(sorted(v["scrypt"])) + " " + " ".join(str(v["scrypt"][x]) for x in ("N","r","p")))(json.loads([r for r in rows if r["key"]=="user/rd"][0]["value"]))')"
check_eq "system ledger: role/rd/A" "reader" "$(sysq '[r["value"] for r in rows if r["key"]=="role/rd/A"][-1]')"
check_eq "system ledger: role/wr/A" "writer" "$(sysq '[r["value"] for r in rows if r["key"]=="role/wr/A"][-1]')"
check_eq "system ledger: role/la2/A (granted by ledger admin la)" "la" "$(sysq '[json.loads(r["meta"])["actor"] for r in rows if r["key"]=="role/la2/A"][-1]')"
check_eq "system ledger: tx metadata {actor, action}" "true" "$(sysq 'all(sorted(json.loads(r["meta"]))==["action","actor"] for r in rows if r["key"].startswith(("ledger/","user/","role/")))')"
check_eq "system ledger: admin actor for ledger/A" "admin" "$(sysq '[json.loads(r["meta"])["actor"] for r in rows if r["key"]=="ledger/A"][0]')"
check_eq "system ledger: the last-admin refusals committed nothing (role/admin/*: admin, admin, , admin)" '["admin", "admin", "", "admin"]' "$(sysq 'json.dumps([r["value"] for r in rows if r["key"]=="role/admin/*"])')"
check_eq "system ledger: nothing for refused actions" "[]" "$(sysq '[r["key"] for r in rows if "evil" in r["key"] or r["key"] in ("user/nopw","user/badrole","user/nol","ledger/nope")]')"
check_eq "no plaintext password in the data dir" "" "$(grep -rl -e rd-secret-pw -e wr-secret-pw -e "$ADMIN_PW" "$D" 2>/dev/null)"
check_eq "system ledger: every login recorded as session/<expiry>/<token hash> {user, expires}" "true" "$(sysq 'all(len(r["key"])==89 and r["key"][25:] == r["key"][25:].lower() and json.loads(r["meta"])["action"]=="login" and sorted(json.loads(r["value"]))==["expires","user"] for r in rows if r["key"].startswith("session/") and not r["flags"] & 1) and sum(1 for r in rows if r["key"].startswith("session/")) >= 5')"
check_eq "system ledger: no token in clear (only their SHA-256)" "" "$(grep -rl -e "$RT" -e "$WT" -e "$AT" "$D" 2>/dev/null)"

# Sessions survive a restart; a logout is final, also across a restart.
RT_OLD="$RT"
LOUT=$(login "$U" rd rd-secret-pw)
req POST "$U/v1/logout" '{}' "$LOUT"
check_eq "logout" '200 {"ok": true}' "$CODE $(jq_py 'j')"
req GET "$U/v1/ledgers" "" "$LOUT"
err_is "a logged-out token is refused" 401 unauthorized
req POST "$U/v1/logout" '{}' "$LOUT"
err_is "logout twice" 401 unauthorized
req POST "$U/v1/logout" '{}' ""
err_is "logout without a token" 401 unauthorized
LOUT2=$(login "$U" rd rd-secret-pw)
LOPIDS=""
for i in 1 2 3 4; do
    curl -s -o /dev/null -w '%{http_code}\n' -X POST -H "Authorization: Bearer $LOUT2" "$U/v1/logout" >"$W/lo.$i" &
    LOPIDS="$LOPIDS $!"
done
wait $LOPIDS
check_eq "4 concurrent logouts of one token: one succeeds" "1 3" "$(cat "$W"/lo.* | grep -c '^200$') $(cat "$W"/lo.* | grep -c '^401$')"

stop_tallyd "$PID1"
check_eq "SIGTERM: clean exit 0" 0 "$STOP_RC"
start_tallyd "$D" || { bad "restart" "started" "$(head -c 300 "$SOUT.err")"; summary t_server; exit 1; }
PID2=$SPID
PORT2=$SPORT
U=$SURL
check_eq "restart: no password printed" 0 "$(grep -c 'admin password' "$SOUT")"
req GET "$U/v1/server"
check_eq "restart: same vkey" "$VKEY" "$(jq_py 'j["vkey"]')"
req GET "$U/v1/ledgers" "" "$RT_OLD"
check_eq "restart: a session from before the restart still works" 200 "$CODE"
req GET "$U/v1/ledgers" "" "$LOUT"
err_is "restart: a logged-out session stays ended" 401 unauthorized
AT=$(login "$U" admin "$ADMIN_PW")
RT=$(login "$U" rd rd-secret-pw)
WT=$(login "$U" wr wr-secret-pw)
check_ne "restart: admin login" "" "$AT"
check_ne "restart: reader login (user persisted)" "" "$RT"
req GET "$U/v1/ledgers" "" "$AT"
check_eq "restart: ledgers persisted" '[["A", "'"$AID"'", 7], ["B", "'"$BID"'", 7]]' "$(jq_py 'sorted([[l["name"],l["id"],l["size"]] for l in j["ledgers"] if l["name"] in ("A","B")])')"
req GET "$U/v1/ledgers/A/get?key=k" "" "$RT"
check_eq "restart: data persisted" "v4 6" "$(jq_py 'j["value"] + " " + str(j["tx"])')"
req GET "$U/v1/ledgers/A/proof/consistency?old=6&size=7" "" "$RT"
check_eq "restart: root at 6 unchanged" "$ROOT6" "$(jq_py 'j["old_root"]')"
req GET "$U/v1/ledgers/B" "" "$RT"
err_is "restart: reader still has no role on B (404)" 404 not_found
req POST "$U/v1/ledgers/A/set" '{"entries":[{"key":"k","value":"x"}]}' "$RT"
err_is "restart: reader still cannot write" 403 forbidden
req POST "$U/v1/ledgers/A/set" '{"entries":[{"key":"after","value":"restart"}]}' "$WT"
check_eq "restart: writer writes tx 8" '200 {"tx": 8}' "$CODE $(jq_py 'j')"

# generated admin password: printed once, works, not reprinted on restart
D2="$W/data2"
LS_NO_ADMIN_PW=1 start_tallyd "$D2" && {
    GPW=$(sed -n 's/^admin password: //p' "$SOUT")
    check_ne "generated admin password printed on first start" "" "$GPW"
    check_ne "generated admin password works" "" "$(login "$SURL" admin "$GPW")"
    P2=$SPID
    stop_tallyd "$P2"
    LS_NO_ADMIN_PW=1 start_tallyd "$D2" && {
        check_eq "generated password not reprinted" 0 "$(grep -c 'admin password' "$SOUT")"
        check_ne "generated password still works after restart" "" "$(login "$SURL" admin "$GPW")"
        stop_tallyd "$SPID"
    }
} || bad "tallyd without TALLY_ADMIN_PASSWORD starts" started "$(head -c 300 "$SOUT.err")"

section "methods: 405 with Allow, HEAD"
hdr() { # method url [token] -> "STATUS|Allow|Content-Length|body bytes"
    local a=(-s -m 30 -o "$W/m.body" -D "$W/m.hdr" -w '%{http_code}')
    [ "$1" = HEAD ] && a+=(-I) || a+=(-X "$1")
    [ -n "${3:-}" ] && a+=(-H "Authorization: Bearer $3")
    local c
    c=$(curl "${a[@]}" "$2")
    printf '%s|%s|%s|%s' "$c" "$(grep -i '^allow:' "$W/m.hdr" | tr -d '\r' | sed 's/^[^:]*: *//')" \
        "$(grep -i '^content-length:' "$W/m.hdr" | tr -d '\r' | sed 's/^[^:]*: *//')" "$(wc -c <"$W/m.body")"
}
check_match "DELETE /v1/ledgers: 405, Allow: GET, HEAD, POST" '^405\|GET, HEAD, POST\|' "$(hdr DELETE "$U/v1/ledgers" "$AT")"
check_eq "DELETE /v1/ledgers: code method_not_allowed" method_not_allowed "$(BODY=$(cat "$W/m.body") jq_py 'j["error"]["code"]')"
check_match "GET /v1/login: 405, Allow: POST" '^405\|POST\|' "$(hdr GET "$U/v1/login")"
check_match "POST /v1/ledgers/A/get: 405, Allow: GET, HEAD" '^405\|GET, HEAD\|' "$(hdr POST "$U/v1/ledgers/A/get?key=k" "$RT")"
check_match "PUT /v1/ledgers/A/tx/1: 405, Allow: GET, HEAD" '^405\|GET, HEAD\|' "$(hdr PUT "$U/v1/ledgers/A/tx/1" "$RT")"
check_match "HEAD /v1/login: 405, Allow: POST" '^405\|POST\|' "$(hdr HEAD "$U/v1/login")"
head_raw() { # path [token] -> "STATUS Content-Length bytes-after-the-headers" (Connection: close)
    python3 - "$PORT2" "$1" "${2:-}" <<'PYEOF'
import socket, sys
port, path, tok = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.create_connection(("127.0.0.1", port)); s.settimeout(10)
auth = "Authorization: Bearer %s\r\n" % tok if tok else ""
s.sendall(("HEAD %s HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n" % (path, auth)).encode())
out = b""
while True:
    b = s.recv(65536)
    if not b: break
    out += b
h, _, rest = out.partition(b"\r\n\r\n")
cl = [l.split(b":")[1].strip().decode() for l in h.split(b"\r\n") if l.lower().startswith(b"content-length:")]
print(h.split(b" ")[1].decode(), cl[0] if cl else "-", len(rest))
PYEOF
}
check_eq "HEAD /health: 200, the GET's Content-Length, no body" "200 12 0" "$(head_raw /health)"
req GET "$U/v1/ledgers/A/state" "" "$RT"
check_eq "HEAD /v1/ledgers/A/state: 200, the GET's length, no body" "200 $(printf '%s\n' "$BODY" | wc -c) 0" "$(head_raw /v1/ledgers/A/state "$RT")"
check_match "HEAD without a token: 401 (checked as GET)" '^401\|' "$(hdr HEAD "$U/v1/ledgers/A/state")"
check_match "HEAD of a key that does not exist: 404" '^404\|' "$(hdr HEAD "$U/v1/ledgers/A/get?key=nokey" "$RT")"

section "password length"
PW1024=$(head -c 1024 /dev/zero | tr '\0' p)
req POST "$U/v1/users" '{"name":"pwmax","password":"'"$PW1024"'","role":"reader","ledger":"A"}' "$AT"
check_eq "a 1024-byte password is taken" 201 "$CODE"
check_ne "and logs in" "" "$(login "$U" pwmax "$PW1024")"
req POST "$U/v1/users" '{"name":"pwover","password":"'"${PW1024}p"'","role":"reader","ledger":"A"}' "$AT"
err_is "a 1025-byte password is refused" 400 bad_request
check_match "... saying why" 'longer than 1024 bytes' "$BODY"
req POST "$U/v1/login" '{"user":"pwmax","password":"'"${PW1024}p"'"}'
err_is "login with a 1025-byte password" 400 bad_request
check_match "... saying why" 'longer than 1024 bytes' "$BODY"
req GET "$U/v1/ledgers/A/scan?prefix=&after=$(head -c 1025 /dev/zero | tr '\0' a)" "" "$AT"
err_is "scan with a 1025-byte after (as a prefix)" 413 too_large

section "1000 ledgers (time-bounded)"
NL=1000
write_many # $W/many.py: m0000.. created, then key "one" written to each
python3 "$W/many.py" "http://127.0.0.1:$PORT2" "$AT" m%04d "$NL" 40 create >"$W/many.out" 2>&1
MANY=$(tail -n1 "$W/many.out")
echo "1000 ledgers: $MANY"
check_eq "1000 ledgers created within 40 s" "$NL []" "$(BODY="$MANY" jq_py 'str(j["done"]) + " " + json.dumps(j["bad"])')"
req GET "$U/v1/ledgers" "" "$AT"
check_eq "list has A, B and the 1000" "$((NL + 2))" "$(jq_py 'sum(1 for l in j["ledgers"] if l["name"] in ("A","B") or (l["name"].startswith("m") and len(l["name"])==5))')"
for n in m0000 m0499 m0999; do
    req GET "$U/v1/ledgers/$n" "" "$AT"
    check_eq "describe $n" "$n 0" "$(jq_py 'j["name"] + " " + str(j["size"])')"
done
req POST "$U/v1/ledgers/m0777/set" '{"entries":[{"key":"k","value":"777"}]}' "$AT"
check_eq "write to m0777" '200 {"tx": 1}' "$CODE $(jq_py 'j')"
req GET "$U/v1/ledgers/m0777/checkpoint" "" "$AT"
check_eq "m0777 checkpoint size 1" "1" "$(printf '%s\n' "$BODY" | sed -n 2p)"
req GET "$U/v1/ledgers" "" "$RT"
check_eq "reader still sees only A among 1002 ledgers" '["A"]' "$(jq_py 'sorted(l["name"] for l in j["ledgers"])')"

# Every one of the 1000 open ledgers writes once: each now has a memtable.
# Their memory must stay small (memtable arena blocks start at 64 KiB: with
# 4 MiB first blocks this was 4.3 GB of RSS).
python3 "$W/many.py" "http://127.0.0.1:$PORT2" "$AT" m%04d "$NL" 40 set one %d >"$W/many-set.out" 2>&1
MANYSET=$(tail -n1 "$W/many-set.out")
echo "one write to each of 1000 ledgers: $MANYSET"
check_eq "one write to each of 1000 ledgers within 40 s" "$NL []" "$(BODY="$MANYSET" jq_py 'str(j["done"]) + " " + json.dumps(j["bad"])')"
RSS_KB=$(awk '/^VmRSS:/ {print $2}' "/proc/$PID2/status" 2>/dev/null)
echo "tallyd RSS with 1002 open ledgers, each written: ${RSS_KB:-?} kB"
check_eq "tallyd RSS under 1.5 GiB with 1002 written ledgers" "yes" "$([ -n "$RSS_KB" ] && [ "$RSS_KB" -lt 1572864 ] && echo yes || echo "no (${RSS_KB:-?} kB)")"
req GET "$U/v1/ledgers/m0999/get?key=one" "" "$AT"
check_eq "m0999 reads its key" "200 999" "$CODE $(jq_py 'j["value"]')"

summary t_server
