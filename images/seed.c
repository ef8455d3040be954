/* ISO 9660 seed writer. Layout (2048-byte sectors): 0-15 system area,
 * 16 primary volume descriptor, 17 terminator, 18/19 path tables (L/M),
 * 20 root directory, 21 Rock Ridge continuation area (the ER entry does
 * not fit in the root's own record), 22.. file data, one extent each. */
#include "images/seed.h"

#include "common/fs.h"
#include "common/timeutil.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

#define SECTOR 2048
#define LBA_PVD 16
#define LBA_TERM 17
#define LBA_LPATH 18
#define LBA_MPATH 19
#define LBA_ROOT 20
#define LBA_CONT 21
#define LBA_DATA 22

#define RR_ER_ID "RRIP_1991A"
#define RR_ER_DES                                                              \
    "THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE "     \
    "SYSTEM SEMANTICS"
#define RR_ER_SRC                                                              \
    "PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER "  \
    "IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION."

struct entry {
    const struct seed_file *f;
    char iso_id[16]; /* "NAME_EXT.;1" style, d-characters */
    uint32_t lba;
};

static void le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * (3 - i)));
}

static void both16(uint8_t *p, uint16_t v)
{
    le16(p, v);
    be16(p + 2, v);
}

static void both32(uint8_t *p, uint32_t v)
{
    le32(p, v);
    be32(p + 4, v);
}

static void pad_str(uint8_t *p, size_t n, const char *s)
{
    memset(p, ' ', n);
    memcpy(p, s, strnlen(s, n));
}

static bool name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64 || streq(s, ".") || streq(s, ".."))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '.' || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

static bool volume_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

/* Level 1 identifier: up to 8 d-characters, '.', up to 3, ";1". A number
 * replaces the end of the base when two names would collide. */
static void iso_ident(const char *name, unsigned idx, bool numbered,
                      char out[16])
{
    char base[9] = { 0 }, ext[4] = { 0 };
    const char *dot = strrchr(name, '.');
    size_t blen = dot && dot != name ? (size_t)(dot - name) : strlen(name);
    size_t bi = 0, ei = 0;
    for (size_t i = 0; i < blen && bi < 8; i++) {
        char c = name[i];
        base[bi++] = (c >= 'a' && c <= 'z') ? (char)(c - 32)
                   : (c >= '0' && c <= '9') ? c : '_';
    }
    if (dot && dot != name)
        for (const char *c = dot + 1; *c && ei < 3; c++)
            ext[ei++] = (*c >= 'a' && *c <= 'z') ? (char)(*c - 32)
                      : (*c >= '0' && *c <= '9') ? *c : '_';
    if (numbered) {
        if (bi > 6)
            bi = 6;
        base[bi++] = (char)('0' + idx / 10 % 10);
        base[bi++] = (char)('0' + idx % 10);
        base[bi] = '\0';
    }
    snprintf(out, 16, "%s.%s;1", base, ext);
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->iso_id,
                  ((const struct entry *)b)->iso_id);
}

static void iso_date7(uint8_t *p, const struct tm *t)
{
    p[0] = (uint8_t)t->tm_year;
    p[1] = (uint8_t)(t->tm_mon + 1);
    p[2] = (uint8_t)t->tm_mday;
    p[3] = (uint8_t)t->tm_hour;
    p[4] = (uint8_t)t->tm_min;
    p[5] = (uint8_t)t->tm_sec;
    p[6] = 0; /* UTC */
}

static void iso_date17(uint8_t *p, const struct tm *t)
{
    char s[64];
    snprintf(s, sizeof(s), "%04d%02d%02d%02d%02d%02d00",
             (t->tm_year + 1900) % 10000, (t->tm_mon + 1) % 100,
             t->tm_mday % 100, t->tm_hour % 100, t->tm_min % 100,
             t->tm_sec % 100);
    memcpy(p, s, 16);
    p[16] = 0;
}

/* Rock Ridge PX (RRIP 1.10 form, 36 bytes). */
static size_t rr_px(uint8_t *p, uint32_t mode, uint32_t links)
{
    p[0] = 'P';
    p[1] = 'X';
    p[2] = 36;
    p[3] = 1;
    both32(p + 4, mode);
    both32(p + 12, links);
    both32(p + 20, 0);
    both32(p + 28, 0);
    return 36;
}

/* One directory record at p; su/su_len is its system use area. Returns
 * its length (even). */
static size_t dir_record(uint8_t *p, uint32_t lba, uint32_t size, bool dir,
                         const void *id, size_t id_len, const uint8_t *su,
                         size_t su_len, const struct tm *t)
{
    size_t len = 33 + id_len;
    if (len % 2)
        len++;
    size_t total = len + su_len;
    if (total % 2)
        total++;
    memset(p, 0, total);
    p[0] = (uint8_t)total;
    both32(p + 2, lba);
    both32(p + 10, size);
    iso_date7(p + 18, t);
    p[25] = dir ? 2 : 0;
    both16(p + 28, 1);
    p[32] = (uint8_t)id_len;
    memcpy(p + 33, id, id_len);
    if (su_len)
        memcpy(p + len, su, su_len);
    return total;
}

int seed_iso_build(const char *volume_id, const struct seed_file *files,
                   size_t n, int64_t mtime, struct buf *out)
{
    struct entry ents[SEED_MAX_FILES];
    struct tm t;
    time_t tt = (time_t)mtime;

    if (!volume_id_ok(volume_id) || n > SEED_MAX_FILES)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!name_ok(files[i].name) || (files[i].len && !files[i].data) ||
            files[i].len > UINT32_MAX)
            return -EINVAL;
        for (size_t j = 0; j < i; j++)
            if (streq(files[i].name, files[j].name))
                return -EINVAL;
        ents[i].f = &files[i];
        iso_ident(files[i].name, (unsigned)i, false, ents[i].iso_id);
        for (size_t j = 0; j < i; j++)
            if (streq(ents[i].iso_id, ents[j].iso_id)) {
                iso_ident(files[i].name, (unsigned)i, true, ents[i].iso_id);
                break;
            }
    }
    qsort(ents, n, sizeof(ents[0]), entry_cmp);
    gmtime_r(&tt, &t);

    uint32_t lba = LBA_DATA;
    for (size_t i = 0; i < n; i++) {
        ents[i].lba = lba;
        lba += (uint32_t)((ents[i].f->len + SECTOR - 1) / SECTOR);
    }
    uint32_t total = lba;
    size_t start = out->len;
    _cleanup_free_ uint8_t *img = xcalloc(LBA_DATA, SECTOR);

    /* Root directory: ".", "..", then the files. */
    uint8_t *root = img + (size_t)LBA_ROOT * SECTOR;
    uint8_t su[255];
    size_t pos = 0, sl = 0;
    /* SP: SUSP in use, no bytes skipped. */
    memcpy(su, "SP\x07\x01\xbe\xef\x00", 7);
    sl = 7;
    sl += rr_px(su + sl, 040555, 2);
    /* CE: the ER entry lives in the continuation sector. */
    size_t er_len = 8 + strlen(RR_ER_ID) + strlen(RR_ER_DES) + strlen(RR_ER_SRC);
    su[sl] = 'C';
    su[sl + 1] = 'E';
    su[sl + 2] = 28;
    su[sl + 3] = 1;
    both32(su + sl + 4, LBA_CONT);
    both32(su + sl + 12, 0);
    both32(su + sl + 20, (uint32_t)er_len);
    sl += 28;
    pos += dir_record(root + pos, LBA_ROOT, SECTOR, true, "\0", 1, su, sl, &t);
    sl = rr_px(su, 040555, 2);
    pos += dir_record(root + pos, LBA_ROOT, SECTOR, true, "\1", 1, su, sl, &t);
    for (size_t i = 0; i < n; i++) {
        size_t nl = strlen(ents[i].f->name);
        sl = rr_px(su, 0100444, 1);
        su[sl] = 'N';
        su[sl + 1] = 'M';
        su[sl + 2] = (uint8_t)(5 + nl);
        su[sl + 3] = 1;
        su[sl + 4] = 0;
        memcpy(su + sl + 5, ents[i].f->name, nl);
        sl += 5 + nl;
        size_t need = 34 + strlen(ents[i].iso_id) + sl + 2;
        if (pos + need > SECTOR)
            return -EINVAL; /* cannot happen with SEED_MAX_FILES */
        pos += dir_record(root + pos, ents[i].lba, (uint32_t)ents[i].f->len,
                          false, ents[i].iso_id, strlen(ents[i].iso_id), su,
                          sl, &t);
    }

    /* Continuation area: ER naming the Rock Ridge extension. */
    uint8_t *er = img + (size_t)LBA_CONT * SECTOR;
    er[0] = 'E';
    er[1] = 'R';
    er[2] = (uint8_t)er_len;
    er[3] = 1;
    er[4] = (uint8_t)strlen(RR_ER_ID);
    er[5] = (uint8_t)strlen(RR_ER_DES);
    er[6] = (uint8_t)strlen(RR_ER_SRC);
    er[7] = 1;
    memcpy(er + 8, RR_ER_ID, strlen(RR_ER_ID));
    memcpy(er + 8 + strlen(RR_ER_ID), RR_ER_DES, strlen(RR_ER_DES));
    memcpy(er + 8 + strlen(RR_ER_ID) + strlen(RR_ER_DES), RR_ER_SRC,
           strlen(RR_ER_SRC));

    /* Path tables: the root only. */
    uint8_t *lp = img + (size_t)LBA_LPATH * SECTOR;
    uint8_t *mp = img + (size_t)LBA_MPATH * SECTOR;
    lp[0] = mp[0] = 1;
    le32(lp + 2, LBA_ROOT);
    be32(mp + 2, LBA_ROOT);
    le16(lp + 6, 1);
    be16(mp + 6, 1);

    /* Primary volume descriptor and terminator. */
    uint8_t *pvd = img + (size_t)LBA_PVD * SECTOR;
    pvd[0] = 1;
    memcpy(pvd + 1, "CD001", 5);
    pvd[6] = 1;
    pad_str(pvd + 8, 32, "LINUX");
    pad_str(pvd + 40, 32, volume_id);
    both32(pvd + 80, total);
    both16(pvd + 120, 1);
    both16(pvd + 124, 1);
    both16(pvd + 128, SECTOR);
    both32(pvd + 132, 10);
    le32(pvd + 140, LBA_LPATH);
    be32(pvd + 148, LBA_MPATH);
    dir_record(pvd + 156, LBA_ROOT, SECTOR, true, "\0", 1, NULL, 0, &t);
    pad_str(pvd + 190, 128, "");
    pad_str(pvd + 318, 128, "");
    pad_str(pvd + 446, 128, "");
    pad_str(pvd + 574, 128, "FOGFABRIC");
    pad_str(pvd + 702, 37 * 3, "");
    iso_date17(pvd + 813, &t);
    iso_date17(pvd + 830, &t);
    memcpy(pvd + 847, "0000000000000000", 16);
    memcpy(pvd + 864, "0000000000000000", 16);
    pvd[881] = 1;
    uint8_t *term = img + (size_t)LBA_TERM * SECTOR;
    term[0] = 255;
    memcpy(term + 1, "CD001", 5);
    term[6] = 1;

    buf_append(out, img, (size_t)LBA_DATA * SECTOR);
    static const uint8_t zeros[SECTOR];
    for (size_t i = 0; i < n; i++) {
        size_t len = ents[i].f->len;
        if (len)
            buf_append(out, ents[i].f->data, len);
        if (len % SECTOR)
            buf_append(out, zeros, SECTOR - len % SECTOR);
    }
    if (out->len - start != (size_t)total * SECTOR)
        abort(); /* our own arithmetic */
    return 0;
}

int seed_iso_write(const char *path, const char *volume_id,
                   const struct seed_file *files, size_t n, mode_t mode)
{
    struct buf b = BUF_INIT;
    int e = seed_iso_build(volume_id, files, n, now_s(), &b);
    if (e == 0)
        e = file_write_atomic(path, b.data, b.len, mode);
    buf_free(&b);
    return e;
}
