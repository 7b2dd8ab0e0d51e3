/* image.c - attachment images: magic numbers, header sizes, and thumbnails (see image.h).
 *
 * The bytes come from a client, so the file is read in two steps. First the header, by our
 * own small readers below (PNG's IHDR, GIF's logical screen, JPEG's markers up to the first
 * SOFn, WebP's VP8/VP8L/VP8X chunk): they only index into the buffer after checking its
 * length, and they give the size the decoder is about to allocate for. Only an image within
 * the caller's pixel budget and KC_IMG_SIDE_MAX a side reaches the decoder, so a small file
 * that declares a huge image (a decompression bomb) costs nothing. The decoded image must
 * then have the size its header gave (a GIF's first frame lies within its screen).
 *
 * The decoding, scaling and encoding are libgd's (Debian's libgd-dev, pkg-config gdlib).
 * It is well kept and packaged in Debian, small, and reads PNG, JPEG, GIF and WebP and
 * writes WebP through one API of in-memory calls (gdImageCreateFrom*Ptr, gdImageWebpPtrEx)
 * over the system's libpng, libjpeg-turbo, its own GIF reader and libwebp. libvips would do
 * the same faster on large images, but brings a large tree of dependencies (GLib, and a
 * loader library for every format it knows) into every daemon that links lib/, for the one
 * small image per upload that kchat-api makes.
 *
 * libgd reports problems through its error callback, which by default prints on stderr: the
 * first thumbnail routes it to a function that drops them (process-wide; kchat has no other
 * user of libgd). What a client sees is the short reason kc_img_thumbnail writes in err.
 * libpng's warnings are not libgd's: libgd 2.3.3 makes its PNG reader without a warning
 * callback, so libpng prints them on stderr itself ("libpng warning: ..." for an interlaced
 * PNG, or a bad checksum in an ancillary chunk), a line outside the JSON log. Only reading
 * PNG through libpng directly, with a callback of our own, would keep them out.
 */
#include "kchat/image.h"

#include <gd.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "kchat/util.h"

/* ---- magic numbers ---- */

/* The first bytes of each type. A RIFF file is WebP when "WEBP" follows its size (below). */
static const struct {
    const char *type;
    size_t len;
    const char *magic;
} magics[] = {
    {"image/png", 8, "\x89PNG\r\n\x1a\n"},
    {"image/jpeg", 3, "\xff\xd8\xff"},
    {"image/gif", 6, "GIF87a"},
    {"image/gif", 6, "GIF89a"},
    {"image/webp", 4, "RIFF"},
    {"application/pdf", 5, "%PDF-"},
    {"application/zip", 4, "PK\x03\x04"},
    {"application/zip", 4, "PK\x05\x06"}, /* an empty archive */
    {"application/zip", 4, "PK\x07\x08"}, /* a spanned archive */
};

static int has(const unsigned char *p, size_t len, size_t at, const char *magic, size_t n)
{
    return len >= at + n && memcmp(p + at, magic, n) == 0;
}

const char *kc_media_sniff(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    if (!p)
        return NULL;
    for (size_t i = 0; i < KC_ARRAY_LEN(magics); i++) {
        if (!has(p, len, 0, magics[i].magic, magics[i].len))
            continue;
        if (strcmp(magics[i].type, "image/webp") == 0 && !has(p, len, 8, "WEBP", 4))
            continue;
        return magics[i].type;
    }
    return NULL;
}

/* ---- the types kchat decodes ---- */

typedef enum { IMG_NONE = -1, IMG_PNG, IMG_JPEG, IMG_GIF, IMG_WEBP } img_kind_t;

static const struct {
    const char *type;
    const char *name; /* for error texts */
} kinds[] = {
    [IMG_PNG] = {"image/png", "PNG"},
    [IMG_JPEG] = {"image/jpeg", "JPEG"},
    [IMG_GIF] = {"image/gif", "GIF"},
    [IMG_WEBP] = {"image/webp", "WebP"},
};

static img_kind_t kind_of(const char *content_type)
{
    if (!content_type)
        return IMG_NONE;
    for (size_t i = 0; i < KC_ARRAY_LEN(kinds); i++)
        if (strcasecmp(content_type, kinds[i].type) == 0)
            return (img_kind_t)i;
    return IMG_NONE;
}

int kc_img_supported(const char *content_type)
{
    return kind_of(content_type) != IMG_NONE;
}

/* ---- header readers: 0 and the size, or -1 ---- */

static uint32_t be16(const unsigned char *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t le16(const unsigned char *p)
{
    return (uint32_t)p[1] << 8 | p[0];
}

static uint32_t le24(const unsigned char *p)
{
    return (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[3] << 24 | le24(p);
}

/* The signature, then the first chunk, which must be a 13-byte IHDR: width, height (big
 * endian; 1..2^31-1 in a valid file). */
static int png_dims(const unsigned char *p, size_t len, uint32_t *w, uint32_t *h)
{
    if (!has(p, len, 0, "\x89PNG\r\n\x1a\n", 8) || len < 24)
        return -1;
    if (be32(p + 8) != 13 || memcmp(p + 12, "IHDR", 4) != 0)
        return -1;
    *w = be32(p + 16);
    *h = be32(p + 20);
    return 0;
}

/* The logical screen: width and height, little endian, after the signature. Every frame lies
 * within it (libgd refuses one that does not). */
static int gif_dims(const unsigned char *p, size_t len, uint32_t *w, uint32_t *h)
{
    if (!(has(p, len, 0, "GIF87a", 6) || has(p, len, 0, "GIF89a", 6)) || len < 10)
        return -1;
    *w = le16(p + 6);
    *h = le16(p + 8);
    return 0;
}

/* JPEG markers that are frame headers: SOF0-SOF15 but DHT (C4), JPG (C8) and DAC (CC). */
static int jpeg_is_sof(unsigned m)
{
    return m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc;
}

/* SOI, then segments up to the first SOFn, as libjpeg walks them: each marker right where
 * the segment before it ends (0xFF fill bytes allowed before its code), a length of at least
 * 2 after every marker but the parameterless ones (RSTn, TEM). A scan, an end or a second
 * SOI before any frame header is not an image. The SOFn: length, precision, height, width
 * (big endian). */
static int jpeg_dims(const unsigned char *p, size_t len, uint32_t *w, uint32_t *h)
{
    if (!has(p, len, 0, "\xff\xd8", 2))
        return -1;
    size_t at = 2;
    for (;;) {
        if (at >= len || p[at] != 0xff)
            return -1;
        while (at < len && p[at] == 0xff)
            at++;
        if (at >= len)
            return -1;
        unsigned m = p[at++];
        if ((m >= 0xd0 && m <= 0xd7) || m == 0x01)
            continue;
        if (m == 0x00 || m == 0xd8 || m == 0xd9 || m == 0xda)
            return -1;
        if (len - at < 2)
            return -1;
        uint32_t seg = be16(p + at);
        if (seg < 2)
            return -1;
        if (jpeg_is_sof(m)) {
            if (seg < 8 || len - at < 7)
                return -1;
            *h = be16(p + at + 3);
            *w = be16(p + at + 5);
            return 0;
        }
        if (len - at < seg)
            return -1;
        at += seg;
    }
}

/* RIFF, its size, WEBP, then the first chunk: "VP8 " (lossy: a key frame's tag, its start
 * code, then 14-bit width and height), "VP8L" (lossless: signature 0x2f, then 14-bit width-1
 * and height-1, and a version of 0) or "VP8X" (extended: flags, 3 reserved bytes, then 24-bit
 * canvas width-1 and height-1). Multi-byte fields are little endian. */
static int webp_dims(const unsigned char *p, size_t len, uint32_t *w, uint32_t *h)
{
    if (!has(p, len, 0, "RIFF", 4) || !has(p, len, 8, "WEBP", 4) || len < 20)
        return -1;
    const unsigned char *c = p + 20; /* the first chunk's payload */
    size_t n = len - 20;
    if (memcmp(p + 12, "VP8 ", 4) == 0) {
        if (n < 10 || (c[0] & 1) != 0 || memcmp(c + 3, "\x9d\x01\x2a", 3) != 0)
            return -1;
        *w = le16(c + 6) & 0x3fff;
        *h = le16(c + 8) & 0x3fff;
        return 0;
    }
    if (memcmp(p + 12, "VP8L", 4) == 0) {
        if (n < 5 || c[0] != 0x2f)
            return -1;
        uint32_t bits = le32(c + 1);
        if (bits >> 29 != 0)
            return -1;
        *w = (bits & 0x3fff) + 1;
        *h = ((bits >> 14) & 0x3fff) + 1;
        return 0;
    }
    if (memcmp(p + 12, "VP8X", 4) == 0) {
        if (n < 10)
            return -1;
        *w = le24(c + 4) + 1;
        *h = le24(c + 7) + 1;
        return 0;
    }
    return -1;
}

static int dims_of(const unsigned char *p, size_t len, img_kind_t kind, int *w, int *h)
{
    uint32_t uw = 0, uh = 0;
    int rc = -1;
    *w = *h = 0;
    if (!p)
        return -1;
    switch (kind) {
    case IMG_PNG: rc = png_dims(p, len, &uw, &uh); break;
    case IMG_JPEG: rc = jpeg_dims(p, len, &uw, &uh); break;
    case IMG_GIF: rc = gif_dims(p, len, &uw, &uh); break;
    case IMG_WEBP: rc = webp_dims(p, len, &uw, &uh); break;
    case IMG_NONE: break;
    }
    /* only PNG's 32-bit fields can pass INT32_MAX, which the format forbids */
    if (rc != 0 || uw == 0 || uh == 0 || uw > INT32_MAX || uh > INT32_MAX)
        return -1;
    *w = (int)uw;
    *h = (int)uh;
    return 0;
}

int kc_img_dimensions(const void *buf, size_t len, const char *content_type, int *w, int *h)
{
    return dims_of(buf, len, kind_of(content_type), w, h);
}

/* ---- thumbnails ---- */

static void gd_quiet(int priority, const char *format, va_list args)
{
    (void)priority;
    (void)format;
    (void)args;
}

static void gd_quiet_install(void)
{
    gdSetErrorMethod(gd_quiet);
}

static pthread_once_t gd_once = PTHREAD_ONCE_INIT;

/* libgd takes a non-const pointer but only reads through it. */
static gdImagePtr decode(const void *buf, int len, img_kind_t kind)
{
    void *data = (void *)(uintptr_t)buf;
    switch (kind) {
    case IMG_PNG: return gdImageCreateFromPngPtr(len, data);
    case IMG_JPEG: return gdImageCreateFromJpegPtr(len, data);
    case IMG_GIF: return gdImageCreateFromGifPtr(len, data);
    case IMG_WEBP: return gdImageCreateFromWebpPtr(len, data);
    case IMG_NONE: break;
    }
    return NULL;
}

/* The size that fits w x h within box x box with the same aspect ratio, never larger than
 * w x h, each side at least 1 (rounded to the nearest pixel). */
static void fit(int w, int h, int box, int *tw, int *th)
{
    if (w <= box && h <= box) {
        *tw = w;
        *th = h;
    } else if (w >= h) {
        *tw = box;
        *th = (int)(((long long)h * box + w / 2) / w);
    } else {
        *th = box;
        *tw = (int)(((long long)w * box + h / 2) / h);
    }
    if (*tw < 1)
        *tw = 1;
    if (*th < 1)
        *th = 1;
}

/* src scaled to tw x th into a new true-colour image that keeps alpha (a palette source's
 * transparent colour becomes transparent), or NULL. */
static gdImagePtr scale(gdImagePtr src, int tw, int th)
{
    gdImagePtr dst = gdImageCreateTrueColor(tw, th);
    if (!dst)
        return NULL;
    gdImageAlphaBlending(dst, 0);
    gdImageSaveAlpha(dst, 1);
    gdImageCopyResampled(dst, src, 0, 0, 0, 0, tw, th, gdImageSX(src), gdImageSY(src));
    return dst;
}

/* The image as WebP appended to out: 0, or -1. */
static int encode_webp(gdImagePtr im, kc_buf_t *out)
{
    int size = 0;
    void *webp = gdImageWebpPtrEx(im, &size, KC_IMG_THUMB_QUALITY);
    if (!webp)
        return -1;
    int rc = size > 0 ? 0 : -1;
    if (rc == 0)
        kc_buf_append(out, webp, (size_t)size);
    gdFree(webp);
    return rc;
}

int kc_img_thumbnail(const void *buf, size_t len, const char *content_type, int box,
                     long long max_pixels, kc_buf_t *out, int *w, int *h, char *err,
                     size_t errlen)
{
    /* A reason cut short to fit err is still a reason: kc_strlcpyf's -ENOSPC is ignored. */
    *w = *h = 0;
    if (errlen)
        err[0] = '\0';
    img_kind_t kind = kind_of(content_type);
    if (kind == IMG_NONE) {
        (void)kc_strlcpyf(err, errlen, "unsupported image type");
        return -1;
    }
    if (box < 1) {
        (void)kc_strlcpyf(err, errlen, "invalid thumbnail size");
        return -1;
    }
    if (!buf || len == 0) {
        (void)kc_strlcpyf(err, errlen, "the file is empty");
        return -1;
    }
    if (len > INT_MAX) {
        (void)kc_strlcpyf(err, errlen, "the file is too large");
        return -1;
    }
    const char *name = kinds[kind].name;
    int ow, oh;
    if (dims_of(buf, len, kind, &ow, &oh) != 0) {
        (void)kc_strlcpyf(err, errlen, "not a %s image", name);
        return -1;
    }
    *w = ow;
    *h = oh;
    if (ow > KC_IMG_SIDE_MAX || oh > KC_IMG_SIDE_MAX || (long long)ow * oh > max_pixels) {
        (void)kc_strlcpyf(err, errlen, "the image is too large (%dx%d)", ow, oh);
        return -1;
    }
    if (pthread_once(&gd_once, gd_quiet_install) != 0) {
        (void)kc_strlcpyf(err, errlen, "cannot decode images");
        return -1;
    }
    gdImagePtr im = decode(buf, (int)len, kind);
    if (!im) {
        (void)kc_strlcpyf(err, errlen, "the %s image could not be decoded", name);
        return -1;
    }
    int sx = gdImageSX(im), sy = gdImageSY(im);
    int ok = kind == IMG_GIF ? sx >= 1 && sy >= 1 && sx <= ow && sy <= oh
                             : sx == ow && sy == oh;
    if (!ok) {
        gdImageDestroy(im);
        (void)kc_strlcpyf(err, errlen, "the %s image is not of the size its header gives",
                          name);
        return -1;
    }
    int tw, th;
    fit(sx, sy, box, &tw, &th);
    gdImagePtr thumb = scale(im, tw, th);
    gdImageDestroy(im);
    if (!thumb) {
        (void)kc_strlcpyf(err, errlen, "the thumbnail could not be made");
        return -1;
    }
    int rc = encode_webp(thumb, out);
    gdImageDestroy(thumb);
    if (rc != 0) {
        (void)kc_strlcpyf(err, errlen, "the thumbnail could not be encoded");
        return -1;
    }
    return 0;
}
