/*
** jtok.c — the client's strict JSON reader (jtok.h). Recursive descent over
** the text, depth-capped; every read is bounds-checked against d->len.
*/
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/jtok.h"

static int fail(jt_doc *d, size_t at, const char *what)
{
    snprintf(d->err, sizeof d->err, "%s at byte %zu", what, at);
    return -1;
}

static int add(jt_doc *d, int type, size_t off)
{
    if (d->n == d->cap) {
        size_t cap = d->cap * 2;
        jt_tok *t = d->t == d->inl ? malloc(cap * sizeof *t) : realloc(d->t, cap * sizeof *t);
        if (!t)
            return fail(d, off, "out of memory");
        if (d->t == d->inl)
            memcpy(t, d->inl, d->n * sizeof *t);
        d->t = t;
        d->cap = cap;
    }
    jt_tok *k = &d->t[d->n];
    memset(k, 0, sizeof *k);
    k->type = (uint8_t)type;
    k->off = (uint32_t)off;
    return (int)d->n++;
}

static void ws(const jt_doc *d, size_t *p)
{
    while (*p < d->len) {
        char c = d->s[*p];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        (*p)++;
    }
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int h = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (h < 0)
            return -1;
        v = v << 4 | (unsigned)h;
    }
    *out = v;
    return 0;
}

/* Length of the valid UTF-8 sequence at s[0..n) (n >= 1), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (len == 0 || c > 0xf4 || len > n)
        return 0;
    for (size_t k = 1; k < len; k++)
        if ((s[k] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) || (c == 0xf0 && s[1] < 0x90) ||
        (c == 0xf4 && s[1] > 0x8f))
        return 0;
    return len;
}

/* 1 for the bytes a string may hold as they are: printable ASCII but '"'
** and '\\' (control bytes, escapes and UTF-8 take the slow path). */
static const unsigned char plain[256] = {
#define R16(x) x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x
    R16(0), R16(0),
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* 0x20: '"' is 0x22 */
    R16(1), R16(1),
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,  /* 0x50: '\\' is 0x5c */
    R16(1), R16(1),
#undef R16
};

/* At the opening quote. Checks the string and records its raw content.
** nul_out (may be NULL): set if it decodes to a NUL byte. */
static int string(jt_doc *d, size_t *p, int *nul_out)
{
    size_t start = *p + 1, i = start;
    int esc = 0, nul = 0;
    const unsigned char *s = (const unsigned char *)d->s;
    for (;;) {
        while (i < d->len && plain[s[i]])
            i++;
        if (i >= d->len)
            return fail(d, i, "unterminated string");
        unsigned char c = s[i];
        if (c == '"')
            break;
        if (c < 0x20)
            return fail(d, i, "control character in a string");
        if (c == '\\') {
            esc = 1;
            if (i + 1 >= d->len)
                return fail(d, i, "unterminated string");
            char e = (char)s[i + 1];
            if (e != 'u') {
                if (!strchr("\"\\/bfnrt", e) || e == '\0')
                    return fail(d, i, "invalid escape");
                i += 2;
                continue;
            }
            unsigned u;
            if (i + 6 > d->len || hex4(d->s + i + 2, &u) != 0)
                return fail(d, i, "invalid \\u escape");
            i += 6;
            if (u >= 0xdc00 && u <= 0xdfff)
                return fail(d, i, "lone low surrogate");
            if (u >= 0xd800 && u <= 0xdbff) {
                unsigned lo;
                if (i + 6 > d->len || s[i] != '\\' || s[i + 1] != 'u' ||
                    hex4(d->s + i + 2, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff)
                    return fail(d, i, "high surrogate without a low one");
                i += 6;
            }
            if (u == 0)
                nul = 1;
            continue;
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t l = utf8_seq(s + i, d->len - i);
        if (l == 0)
            return fail(d, i, "invalid UTF-8 in a string");
        i += l;
    }
    int k = add(d, JT_STRING, start);
    if (k < 0)
        return -1;
    d->t[k].len = (uint32_t)(i - start);
    d->t[k].esc = (uint8_t)esc;
    d->t[k].next = (uint32_t)d->n;
    if (nul_out)
        *nul_out = nul;
    *p = i + 1;
    return k;
}

static int number(jt_doc *d, size_t *p)
{
    size_t i = *p, n = d->len;
    const char *s = d->s;
    int neg = 0, real = 0;
    if (s[i] == '-') {
        neg = 1;
        i++;
    }
    if (i >= n || s[i] < '0' || s[i] > '9')
        return fail(d, i, "invalid number");
    if (s[i] == '0') {
        i++;
        if (i < n && s[i] >= '0' && s[i] <= '9')
            return fail(d, i, "leading zero");
    } else {
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (i < n && s[i] == '.') {
        real = 1;
        i++;
        if (i >= n || s[i] < '0' || s[i] > '9')
            return fail(d, i, "invalid number");
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        real = 1;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= n || s[i] < '0' || s[i] > '9')
            return fail(d, i, "invalid number");
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    int k = add(d, real ? JT_REAL : JT_INTEGER, *p);
    if (k < 0)
        return -1;
    jt_tok *t = &d->t[k];
    t->len = (uint32_t)(i - *p);
    t->next = (uint32_t)d->n;
    if (!real) {
        /* Accumulate negatively: -INT64_MIN does not fit. */
        int64_t v = 0;
        for (size_t j = *p + (size_t)neg; j < i; j++) {
            int dg = s[j] - '0';
            if (v < (INT64_MIN + dg) / 10)
                return fail(d, *p, "integer out of range");
            v = v * 10 - dg;
        }
        if (!neg && v == INT64_MIN)
            return fail(d, *p, "integer out of range");
        t->i = neg ? v : -v;
    } else {
        char buf[64], *tmp = t->len < sizeof buf ? buf : malloc(t->len + 1);
        if (!tmp)
            return fail(d, *p, "out of memory");
        memcpy(tmp, s + *p, t->len);
        tmp[t->len] = '\0';
        errno = 0;
        double v = strtod(tmp, NULL);
        int over = errno == ERANGE && isinf(v);
        if (tmp != buf)
            free(tmp);
        if (over)
            return fail(d, *p, "real number overflow");
    }
    *p = i;
    return k;
}

/* Decodes the raw content of string token t into out (NUL-terminated). */
static size_t decode(const jt_doc *d, const jt_tok *t, char *out)
{
    const char *s = d->s + t->off;
    size_t n = t->len, o = 0;
    if (!t->esc) {
        memcpy(out, s, n);
        out[n] = '\0';
        return n;
    }
    for (size_t i = 0; i < n;) {
        if (s[i] != '\\') {
            out[o++] = s[i++];
            continue;
        }
        char e = s[i + 1];
        if (e != 'u') {
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            out[o++] = to[strchr(from, e) - from];
            i += 2;
            continue;
        }
        unsigned u, lo;
        hex4(s + i + 2, &u); /* all checked by string() */
        i += 6;
        if (u >= 0xd800 && u <= 0xdbff) {
            hex4(s + i + 2, &lo);
            i += 6;
            u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
        }
        if (u < 0x80) {
            out[o++] = (char)u;
        } else if (u < 0x800) {
            out[o++] = (char)(0xc0 | u >> 6);
            out[o++] = (char)(0x80 | (u & 0x3f));
        } else if (u < 0x10000) {
            out[o++] = (char)(0xe0 | u >> 12);
            out[o++] = (char)(0x80 | ((u >> 6) & 0x3f));
            out[o++] = (char)(0x80 | (u & 0x3f));
        } else {
            out[o++] = (char)(0xf0 | u >> 18);
            out[o++] = (char)(0x80 | ((u >> 12) & 0x3f));
            out[o++] = (char)(0x80 | ((u >> 6) & 0x3f));
            out[o++] = (char)(0x80 | (u & 0x3f));
        }
    }
    out[o] = '\0';
    return o;
}

/* Keys a and b (string tokens) equal after decoding? -1 on ENOMEM. */
static int key_eq(const jt_doc *d, const jt_tok *a, const jt_tok *b)
{
    if (!a->esc && !b->esc)
        return a->len == b->len && memcmp(d->s + a->off, d->s + b->off, a->len) == 0;
    char sa[256], sb[256];
    char *pa = a->len < sizeof sa ? sa : malloc(a->len + 1);
    char *pb = b->len < sizeof sb ? sb : malloc(b->len + 1);
    int eq = -1;
    if (pa && pb) {
        size_t la = decode(d, a, pa), lb = decode(d, b, pb);
        eq = la == lb && memcmp(pa, pb, la) == 0;
    }
    if (pa != sa)
        free(pa);
    if (pb != sb)
        free(pb);
    return eq;
}

static int value(jt_doc *d, size_t *p, int depth);

static int container(jt_doc *d, size_t *p, int depth, int obj)
{
    if (depth >= JT_DEPTH_MAX)
        return fail(d, *p, "nested too deeply");
    int k = add(d, obj ? JT_OBJECT : JT_ARRAY, *p);
    if (k < 0)
        return -1;
    char close = obj ? '}' : ']';
    uint32_t count = 0;
    (*p)++;
    ws(d, p);
    if (*p < d->len && d->s[*p] == close) {
        (*p)++;
    } else {
        for (;;) {
            if (obj) {
                if (*p >= d->len || d->s[*p] != '"')
                    return fail(d, *p, "object key expected");
                int nul = 0;
                int key = string(d, p, &nul);
                if (key < 0)
                    return -1;
                if (nul)
                    return fail(d, d->t[key].off, "NUL byte in an object key");
                if (count >= JT_MEMBERS_MAX)
                    return fail(d, d->t[key].off, "object with too many members");
                /* Duplicate keys: compare with the earlier members. */
                for (int m = k + 1; m < key; m = (int)d->t[m + 1].next) {
                    int eq = key_eq(d, &d->t[m], &d->t[key]);
                    if (eq < 0)
                        return fail(d, d->t[key].off, "out of memory");
                    if (eq)
                        return fail(d, d->t[key].off, "duplicate object key");
                }
                ws(d, p);
                if (*p >= d->len || d->s[*p] != ':')
                    return fail(d, *p, "':' expected");
                (*p)++;
                ws(d, p);
            }
            if (value(d, p, depth + 1) < 0)
                return -1;
            count++;
            ws(d, p);
            if (*p < d->len && d->s[*p] == ',') {
                (*p)++;
                ws(d, p);
                continue;
            }
            if (*p < d->len && d->s[*p] == close) {
                (*p)++;
                break;
            }
            return fail(d, *p, obj ? "',' or '}' expected" : "',' or ']' expected");
        }
    }
    d->t[k].count = count;
    d->t[k].next = (uint32_t)d->n;
    d->t[k].len = (uint32_t)(*p - d->t[k].off);
    return k;
}

static int literal(jt_doc *d, size_t *p, const char *word, int type)
{
    size_t l = strlen(word);
    if (d->len - *p < l || memcmp(d->s + *p, word, l) != 0)
        return fail(d, *p, "invalid token");
    int k = add(d, type, *p);
    if (k < 0)
        return -1;
    d->t[k].len = (uint32_t)l;
    d->t[k].next = (uint32_t)d->n;
    *p += l;
    return k;
}

static int value(jt_doc *d, size_t *p, int depth)
{
    if (*p >= d->len)
        return fail(d, *p, "value expected");
    switch (d->s[*p]) {
    case '{': return container(d, p, depth, 1);
    case '[': return container(d, p, depth, 0);
    case '"': return string(d, p, NULL);
    case 't': return literal(d, p, "true", JT_TRUE);
    case 'f': return literal(d, p, "false", JT_FALSE);
    case 'n': return literal(d, p, "null", JT_NULL);
    default:
        if (d->s[*p] == '-' || (d->s[*p] >= '0' && d->s[*p] <= '9'))
            return number(d, p);
        return fail(d, *p, "invalid token");
    }
}

int jt_parse(jt_doc *d, const char *s, size_t len)
{
    d->s = s;
    d->len = len;
    d->t = d->inl;
    d->n = 0;
    d->cap = JT_INLINE;
    d->err[0] = '\0';
    if (len >= UINT32_MAX)
        return fail(d, 0, "document too large");
    size_t p = 0;
    ws(d, &p);
    if (p >= len || (s[p] != '{' && s[p] != '['))
        return fail(d, p, "an object or array expected");
    if (value(d, &p, 0) < 0)
        return -1;
    ws(d, &p);
    if (p != len)
        return fail(d, p, "end of input expected");
    return 0;
}

void jt_free(jt_doc *d)
{
    if (d->t && d->t != d->inl)
        free(d->t);
    d->t = d->inl;
    d->n = 0;
}

int jt_type(const jt_doc *d, int i) { return i < 0 || (size_t)i >= d->n ? JT_NONE : d->t[i].type; }

int jt_get(const jt_doc *d, int obj, const char *name)
{
    if (jt_type(d, obj) != JT_OBJECT)
        return -1;
    size_t nl = strlen(name);
    int m = obj + 1;
    for (uint32_t c = 0; c < d->t[obj].count; c++, m = (int)d->t[m + 1].next) {
        const jt_tok *k = &d->t[m];
        if (!k->esc) {
            if (k->len == nl && memcmp(d->s + k->off, name, nl) == 0)
                return m + 1;
            continue;
        }
        if (k->len < nl)
            continue; /* decoding only shortens */
        char buf[256], *b = k->len < sizeof buf ? buf : malloc(k->len + 1);
        if (!b)
            return -1;
        size_t l = decode(d, k, b);
        int eq = l == nl && memcmp(b, name, nl) == 0;
        if (b != buf)
            free(b);
        if (eq)
            return m + 1;
    }
    return -1;
}

int jt_first(const jt_doc *d, int arr)
{
    return jt_type(d, arr) == JT_ARRAY && d->t[arr].count > 0 ? arr + 1 : -1;
}

int jt_next(const jt_doc *d, int i) { return jt_type(d, i) == JT_NONE ? -1 : (int)d->t[i].next; }

size_t jt_count(const jt_doc *d, int i)
{
    int t = jt_type(d, i);
    return t == JT_OBJECT || t == JT_ARRAY ? d->t[i].count : 0;
}

int jt_int(const jt_doc *d, int i, int64_t *out)
{
    if (jt_type(d, i) != JT_INTEGER)
        return -1;
    *out = d->t[i].i;
    return 0;
}

int jt_str_raw(const jt_doc *d, int i, const char **p, size_t *n)
{
    if (jt_type(d, i) != JT_STRING)
        return -1;
    if (d->t[i].esc)
        return 0;
    *p = d->s + d->t[i].off;
    *n = d->t[i].len;
    return 1;
}

size_t jt_str_rawlen(const jt_doc *d, int i)
{
    return jt_type(d, i) == JT_STRING ? d->t[i].len : 0;
}

int jt_str_decode(const jt_doc *d, int i, char *out, size_t *out_len)
{
    if (jt_type(d, i) != JT_STRING)
        return -1;
    *out_len = decode(d, &d->t[i], out);
    return 0;
}

int jt_str_dup(const jt_doc *d, int i, uint8_t **out, size_t *out_len)
{
    if (jt_type(d, i) != JT_STRING)
        return -1;
    char *b = malloc((size_t)d->t[i].len + 1);
    if (!b)
        return -2;
    *out_len = decode(d, &d->t[i], b);
    *out = (uint8_t *)b;
    return 0;
}
