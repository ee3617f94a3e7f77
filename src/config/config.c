/* Typed YAML configs over libyaml's event parser. Mappings nest into dotted keys; sequences of
 * scalars fill float lists; every scalar is checked against the schema's type. */
#include "retort/config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

static const rt_cfg_field *find_field(const rt_cfg_field *s, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (!strcmp(s[i].key, key)) return &s[i];
    return NULL;
}

static int unknown_key(rt_ctx *ctx, const rt_cfg_field *s, int n, const char *key, const char *where) {
    /* suggest keys sharing the last component or the section, to make typos obvious */
    char known[640] = "";
    size_t len = 0;
    const char *dot = strrchr(key, '.');
    size_t sec = dot ? (size_t)(dot - key) : 0;
    for (int i = 0; i < n && len < sizeof known - 80; i++)
        if (!sec || !strncmp(s[i].key, key, sec))
            len += (size_t)snprintf(known + len, sizeof known - len, "%s%s", len ? ", " : "", s[i].key);
    return rt_fail(ctx, RT_EINVAL, "%s: unknown key '%s' (known%s%.*s: %s)", where, key, sec ? " in " : "", (int)sec,
                   key, known);
}

static int parse_scalar(rt_ctx *ctx, const rt_cfg_field *f, void *dst, const char *v, const char *where) {
    char *end;
    char *p = (char *)dst + f->offset;
    switch (f->type) {
    case RT_CFG_INT: {
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end)
            return rt_fail(ctx, RT_EINVAL, "%s: key '%s' expects an integer, got '%s'", where, f->key, v);
        *(int64_t *)p = x;
        return RT_OK;
    }
    case RT_CFG_FLOAT: {
        errno = 0;
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x))
            return rt_fail(ctx, RT_EINVAL, "%s: key '%s' expects a number, got '%s'", where, f->key, v);
        *(double *)p = x;
        return RT_OK;
    }
    case RT_CFG_BOOL: {
        static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
        for (int i = 0; i < 4; i++) {
            if (!strcasecmp(v, yes[i])) return *(int *)p = 1, RT_OK;
            if (!strcasecmp(v, no[i])) return *(int *)p = 0, RT_OK;
        }
        return rt_fail(ctx, RT_EINVAL, "%s: key '%s' expects true or false, got '%s'", where, f->key, v);
    }
    case RT_CFG_STR:
        if (strlen(v) >= RT_CFG_STR_MAX)
            return rt_fail(ctx, RT_EINVAL, "%s: key '%s': value longer than %d characters", where, f->key,
                           RT_CFG_STR_MAX - 1);
        strcpy(p, v);
        return RT_OK;
    case RT_CFG_STRLIST: {
        /* text form "[a, b]" or "a,b"; items are trimmed of spaces and quotes */
        rt_cfg_strlist *l = (rt_cfg_strlist *)p;
        l->n = 0;
        const char *s = v;
        while (*s == ' ' || *s == '[') s++;
        while (*s && *s != ']') {
            size_t len = strcspn(s, ",]");
            const char *b = s, *e = s + len;
            while (b < e && (*b == ' ' || *b == '"' || *b == '\'')) b++;
            while (e > b && (e[-1] == ' ' || e[-1] == '"' || e[-1] == '\'')) e--;
            if (e > b) {
                if (l->n == RT_CFG_STRLIST_MAX)
                    return rt_fail(ctx, RT_EINVAL, "%s: key '%s': more than %d items", where, f->key, RT_CFG_STRLIST_MAX);
                if ((size_t)(e - b) >= sizeof l->v[0])
                    return rt_fail(ctx, RT_EINVAL, "%s: key '%s': item '%.*s' too long", where, f->key, (int)(e - b), b);
                memcpy(l->v[l->n], b, (size_t)(e - b));
                l->v[l->n++][e - b] = 0;
            }
            s += len;
            while (*s == ',') s++;
        }
        return RT_OK;
    }
    case RT_CFG_FLOATLIST: {
        /* text form "[1, 2, 3]" or "1,2,3" (overrides and defaults) */
        rt_cfg_list *l = (rt_cfg_list *)p;
        l->n = 0;
        const char *s = v;
        while (*s == ' ' || *s == '[') s++;
        while (*s && *s != ']') {
            errno = 0;
            double x = strtod(s, &end);
            if (errno || end == s || !isfinite(x))
                return rt_fail(ctx, RT_EINVAL, "%s: key '%s' expects a list of numbers, got '%s'", where, f->key, v);
            if (l->n == RT_CFG_LIST_MAX)
                return rt_fail(ctx, RT_EINVAL, "%s: key '%s': more than %d values", where, f->key, RT_CFG_LIST_MAX);
            l->v[l->n++] = x;
            s = end;
            while (*s == ' ' || *s == ',') s++;
        }
        return RT_OK;
    }
    }
    return rt_fail(ctx, RT_EINVAL, "%s: key '%s' has an unknown type", where, f->key);
}

int rt_config_set(rt_ctx *ctx, const rt_cfg_field *s, int n, void *dst, const char *key, const char *value,
                  const char *where) {
    const rt_cfg_field *f = find_field(s, n, key);
    if (!f) return unknown_key(ctx, s, n, key, where);
    return parse_scalar(ctx, f, dst, value, where);
}

/* Walk the YAML events keeping a stack of mapping keys. */
static int load_yaml(rt_ctx *ctx, const rt_cfg_field *s, int n, void *dst, const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return rt_fail(ctx, RT_EIO, "config %s: cannot open: %s", path, strerror(errno));
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, fp);
    char stack[8][128];
    int depth = 0, expect_key[9] = {0}, rc = RT_OK, in_list = 0;
    char key[512], list_text[1024], where[600];
    const rt_cfg_field *list_field = NULL;
    int list_line = 0;
    for (int done = 0; !done && rc == RT_OK;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            rc = rt_fail(ctx, RT_EFORMAT, "config %s:%zu: YAML error: %s", path, parser.problem_mark.line + 1,
                         parser.problem ? parser.problem : "malformed");
            break;
        }
        int line = (int)ev.start_mark.line + 1;
        snprintf(where, sizeof where, "config %s:%d", path, line);
        /* the dotted key of the current position */
        key[0] = 0;
        for (int i = 0; i < depth; i++) {
            strcat(key, i ? "." : "");
            strcat(key, stack[i]);
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT: done = 1; break;
        case YAML_MAPPING_START_EVENT:
            if (in_list) rc = rt_fail(ctx, RT_EINVAL, "%s: key '%s': lists hold numbers only", where, key);
            else if (depth >= 8) rc = rt_fail(ctx, RT_EINVAL, "%s: nesting too deep", where);
            else if (depth > 0 && find_field(s, n, key))
                rc = rt_fail(ctx, RT_EINVAL, "%s: key '%s' expects a single value, got a mapping", where, key);
            else expect_key[depth] = 1; /* the mapping's entries sit one level below its key */
            break;
        case YAML_MAPPING_END_EVENT:
            if (depth > 0) depth--;
            if (depth >= 0) expect_key[depth] = 1;
            break;
        case YAML_SEQUENCE_START_EVENT:
            list_field = find_field(s, n, key);
            if (!list_field) rc = unknown_key(ctx, s, n, key, where);
            else if (list_field->type != RT_CFG_FLOATLIST && list_field->type != RT_CFG_STRLIST)
                rc = rt_fail(ctx, RT_EINVAL, "%s: key '%s' expects a single value, got a list", where, key);
            in_list = 1;
            list_line = line;
            list_text[0] = 0;
            break;
        case YAML_SEQUENCE_END_EVENT:
            in_list = 0;
            snprintf(where, sizeof where, "config %s:%d", path, list_line);
            if (rc == RT_OK) rc = parse_scalar(ctx, list_field, dst, list_text, where);
            if (depth > 0) depth--;
            expect_key[depth] = 1;
            break;
        case YAML_SCALAR_EVENT: {
            const char *v = (const char *)ev.data.scalar.value;
            if (in_list) {
                if (strlen(list_text) + strlen(v) + 2 < sizeof list_text) {
                    strcat(list_text, v);
                    strcat(list_text, ",");
                }
            } else if (expect_key[depth]) {
                if (depth >= 8 || strlen(v) >= sizeof stack[0]) {
                    rc = rt_fail(ctx, RT_EINVAL, "%s: key too long or nested too deep", where);
                    break;
                }
                snprintf(stack[depth], sizeof stack[0], "%s", v);
                expect_key[depth] = 0;
                depth++;
                expect_key[depth] = 0;
            } else if (depth == 0) {
                rc = rt_fail(ctx, RT_EFORMAT, "%s: the config must be a mapping of keys to values", where);
            } else {
                rc = rt_config_set(ctx, s, n, dst, key, v, where);
                depth--;
                expect_key[depth] = 1;
            }
            break;
        }
        case YAML_ALIAS_EVENT: rc = rt_fail(ctx, RT_EINVAL, "%s: YAML aliases are not supported", where); break;
        default: break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    fclose(fp);
    return rc;
}

int rt_config_load(rt_ctx *ctx, const rt_cfg_field *s, int n, void *dst, const char *path, int noverrides,
                   char *const *overrides) {
    for (int i = 0; i < n; i++) {
        int rc = parse_scalar(ctx, &s[i], dst, s[i].def ? s[i].def : (s[i].type == RT_CFG_STR ? "" : s[i].type == RT_CFG_FLOATLIST || s[i].type == RT_CFG_STRLIST ? "[]" : "0"), "default");
        if (rc) return rc;
    }
    if (path) {
        int rc = load_yaml(ctx, s, n, dst, path);
        if (rc) return rc;
    }
    for (int i = 0; i < noverrides; i++) {
        const char *eq = strchr(overrides[i], '=');
        char key[256];
        if (!eq || eq == overrides[i] || (size_t)(eq - overrides[i]) >= sizeof key)
            return rt_fail(ctx, RT_EINVAL, "override '%s': expected key=value", overrides[i]);
        memcpy(key, overrides[i], (size_t)(eq - overrides[i]));
        key[eq - overrides[i]] = 0;
        int rc = rt_config_set(ctx, s, n, dst, key, eq + 1, "command line");
        if (rc) return rc;
    }
    return RT_OK;
}

int rt_config_write(const rt_cfg_field *s, int n, const void *src, void *file) {
    FILE *f = file;
    char prev[256] = "";
    for (int i = 0; i < n; i++) {
        /* print section headers when the dotted prefix changes (fields of a section are adjacent) */
        const char *k = s[i].key, *dot = strrchr(k, '.');
        size_t plen = dot ? (size_t)(dot - k) : 0;
        if (plen && (strlen(prev) != plen || strncmp(prev, k, plen))) {
            int lvl = 0;
            for (const char *c = k; c < k + plen; c++) lvl += *c == '.';
            /* only one level of nesting is printed as a block; deeper keys stay dotted below it */
            const char *first = strchr(k, '.');
            fprintf(f, "%.*s:\n", (int)(first - k), k);
            (void)lvl;
            snprintf(prev, sizeof prev, "%.*s", (int)plen, k);
        } else if (!plen)
            prev[0] = 0;
        const char *name = plen ? strchr(k, '.') + 1 : k;
        fprintf(f, "%s%s: ", plen ? "  " : "", name);
        const char *p = (const char *)src + s[i].offset;
        switch (s[i].type) {
        case RT_CFG_INT: fprintf(f, "%lld\n", (long long)*(const int64_t *)p); break;
        case RT_CFG_FLOAT: fprintf(f, "%.9g\n", *(const double *)p); break;
        case RT_CFG_BOOL: fprintf(f, "%s\n", *(const int *)p ? "true" : "false"); break;
        case RT_CFG_STR: fprintf(f, "\"%s\"\n", p); break;
        case RT_CFG_STRLIST: {
            const rt_cfg_strlist *l = (const rt_cfg_strlist *)p;
            fprintf(f, "[");
            for (int j = 0; j < l->n; j++) fprintf(f, "%s%s", j ? ", " : "", l->v[j]);
            fprintf(f, "]\n");
            break;
        }
        case RT_CFG_FLOATLIST: {
            const rt_cfg_list *l = (const rt_cfg_list *)p;
            fprintf(f, "[");
            for (int j = 0; j < l->n; j++) fprintf(f, "%s%.9g", j ? ", " : "", l->v[j]);
            fprintf(f, "]\n");
            break;
        }
        }
    }
    return ferror(f) ? RT_EIO : RT_OK;
}
