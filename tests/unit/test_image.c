/* test_image.c - lib/image: magic numbers, header sizes of real PNG, JPEG, GIF and WebP files
 * (made here with libgd), every truncation of those headers, a JPEG with segments before its
 * frame header, thumbnails (scaled down, never up, alpha kept) and the files that are refused
 * (a declared size too large, before decoding; a type other than the declared one). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <gd.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "kchat/buf.h"
#include "kchat/image.h"

#define MAX_PIXELS 4000000LL
/* A string literal's bytes, without the terminating NUL. */
#define APPEND(b, lit) kc_buf_append((b), (lit), sizeof(lit) - 1)

typedef enum { PNG, JPEG, GIF, WEBP, WEBP_LOSSLESS } fmt_t;

static const char *const type_of[] = {
    [PNG] = "image/png",   [JPEG] = "image/jpeg", [GIF] = "image/gif",
    [WEBP] = "image/webp", [WEBP_LOSSLESS] = "image/webp",
};

/* A w x h true-colour image: a gradient, its left half transparent when alpha is set. */
static gdImagePtr make_image(int w, int h, int alpha)
{
    gdImagePtr im = gdImageCreateTrueColor(w, h);
    assert_non_null(im);
    gdImageAlphaBlending(im, 0);
    gdImageSaveAlpha(im, 1);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int a = alpha && x < w / 2 ? gdAlphaTransparent : gdAlphaOpaque;
            gdImageSetPixel(im, x, y, gdTrueColorAlpha(x * 255 / w, y * 255 / h, 128, a));
        }
    return im;
}

/* The image encoded in fmt, appended to out. */
static void encode(gdImagePtr im, fmt_t fmt, kc_buf_t *out)
{
    int size = 0;
    void *p = NULL;
    switch (fmt) {
    case PNG: p = gdImagePngPtr(im, &size); break;
    case JPEG: p = gdImageJpegPtr(im, &size, 85); break;
    case GIF: p = gdImageGifPtr(im, &size); break;
    case WEBP: p = gdImageWebpPtrEx(im, &size, 75); break;
    case WEBP_LOSSLESS: p = gdImageWebpPtrEx(im, &size, gdWebpLossless); break;
    }
    assert_non_null(p);
    assert_true(size > 0);
    kc_buf_append(out, p, (size_t)size);
    gdFree(p);
}

/* A fresh w x h image encoded in fmt, into out (emptied first). */
static void make_file(int w, int h, int alpha, fmt_t fmt, kc_buf_t *out)
{
    gdImagePtr im = make_image(w, h, alpha);
    kc_buf_reset(out);
    encode(im, fmt, out);
    gdImageDestroy(im);
}

static void expect_dims(const void *p, size_t len, const char *type, int want_w, int want_h)
{
    int w = -1, h = -1;
    assert_int_equal(kc_img_dimensions(p, len, type, &w, &h), 0);
    assert_int_equal(w, want_w);
    assert_int_equal(h, want_h);
}

static void expect_no_dims(const void *p, size_t len, const char *type)
{
    int w = -1, h = -1;
    assert_int_equal(kc_img_dimensions(p, len, type, &w, &h), -1);
    assert_int_equal(w, 0);
    assert_int_equal(h, 0);
}

/* ---- kc_media_sniff, kc_img_supported ---- */

#define SNIFF(lit) kc_media_sniff((lit), sizeof(lit) - 1)

static void test_sniff(void **state)
{
    (void)state;
    assert_string_equal(SNIFF("\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
    assert_string_equal(SNIFF("\xff\xd8\xff\xe0"), "image/jpeg");
    assert_string_equal(SNIFF("GIF87a\1\0\1\0"), "image/gif");
    assert_string_equal(SNIFF("GIF89a\1\0\1\0"), "image/gif");
    assert_string_equal(SNIFF("RIFF\x24\0\0\0WEBPVP8 "), "image/webp");
    assert_string_equal(SNIFF("%PDF-1.7\n"), "application/pdf");
    assert_string_equal(SNIFF("PK\x03\x04\x14\0"), "application/zip");
    assert_string_equal(SNIFF("PK\x05\x06"), "application/zip");
    /* no match: other RIFF files, text, near misses, a magic cut short, nothing */
    assert_null(SNIFF("RIFF\x24\0\0\0WAVEfmt "));
    assert_null(SNIFF("RIFF\x24\0\0\0WEB"));
    assert_null(SNIFF("hello, world"));
    assert_null(SNIFF("GIF88a\1\0\1\0"));
    assert_null(SNIFF("\x89PNG\r\n\x1a"));
    assert_null(SNIFF("\xff\xd8"));
    assert_null(SNIFF("%PDF"));
    assert_null(SNIFF(""));
    assert_null(kc_media_sniff(NULL, 10));

    kc_buf_t f = {0};
    static const char *const want[] = {"image/png", "image/jpeg", "image/gif", "image/webp",
                                       "image/webp"};
    for (fmt_t fmt = PNG; fmt <= WEBP_LOSSLESS; fmt++) {
        make_file(8, 8, 0, fmt, &f);
        assert_string_equal(kc_media_sniff(f.data, f.len), want[fmt]);
    }
    kc_buf_free(&f);
}

static void test_supported(void **state)
{
    (void)state;
    assert_true(kc_img_supported("image/png"));
    assert_true(kc_img_supported("image/jpeg"));
    assert_true(kc_img_supported("image/gif"));
    assert_true(kc_img_supported("image/webp"));
    assert_true(kc_img_supported("IMAGE/PNG"));
    assert_false(kc_img_supported("application/pdf"));
    assert_false(kc_img_supported("application/zip"));
    assert_false(kc_img_supported("image/svg+xml"));
    assert_false(kc_img_supported("image/png; x=y"));
    assert_false(kc_img_supported(""));
    assert_false(kc_img_supported(NULL));
}

/* ---- kc_img_dimensions ---- */

static void test_dimensions_of_each_type(void **state)
{
    (void)state;
    kc_buf_t f = {0};
    for (fmt_t fmt = PNG; fmt <= WEBP_LOSSLESS; fmt++) {
        make_file(37, 23, 0, fmt, &f);
        expect_dims(f.data, f.len, type_of[fmt], 37, 23);
        make_file(1, 300, 0, fmt, &f);
        expect_dims(f.data, f.len, type_of[fmt], 1, 300);
        /* the bytes are not of another type */
        for (fmt_t other = PNG; other <= WEBP; other++)
            if (strcmp(type_of[other], type_of[fmt]) != 0)
                expect_no_dims(f.data, f.len, type_of[other]);
        expect_no_dims(f.data, f.len, "application/pdf");
        expect_no_dims(f.data, f.len, NULL);
    }
    /* WebP with alpha is the extended format (VP8X): its canvas */
    make_file(41, 17, 1, WEBP, &f);
    assert_memory_equal(f.data + 12, "VP8X", 4);
    expect_dims(f.data, f.len, "image/webp", 41, 17);
    make_file(41, 17, 0, WEBP, &f);
    assert_memory_equal(f.data + 12, "VP8 ", 4);
    make_file(41, 17, 0, WEBP_LOSSLESS, &f);
    assert_memory_equal(f.data + 12, "VP8L", 4);
    kc_buf_free(&f);
}

/* Every prefix of a real file, in a buffer of exactly that size (so ASan sees a read past
 * it): no size, or the right one, never anything else. The whole header gives the size. */
static void test_truncated_headers(void **state)
{
    (void)state;
    kc_buf_t f = {0};
    for (fmt_t fmt = PNG; fmt <= WEBP_LOSSLESS; fmt++)
        for (int alpha = 0; alpha <= 1; alpha++) {
            make_file(45, 29, alpha, fmt, &f);
            size_t upto = f.len < 4096 ? f.len : 4096;
            size_t first = 0; /* the shortest prefix that gives the size */
            for (size_t n = 0; n <= upto; n++) {
                unsigned char *p = malloc(n ? n : 1);
                assert_non_null(p);
                memcpy(p, f.data, n);
                int w = -1, h = -1;
                int rc = kc_img_dimensions(p, n, type_of[fmt], &w, &h);
                free(p);
                if (rc == 0) {
                    assert_int_equal(w, 45);
                    assert_int_equal(h, 29);
                    if (!first)
                        first = n;
                } else {
                    assert_int_equal(rc, -1);
                    assert_int_equal(w, 0);
                    assert_int_equal(h, 0);
                    assert_int_equal(first, 0); /* a longer prefix never loses the size */
                }
            }
            /* the header, not the pixels (a JPEG's comment and quantisation tables come first) */
            if (first == 0 || first > 300)
                fail_msg("format %d, alpha %d: the size after %zu of %zu bytes", (int)fmt,
                         alpha, first, f.len);
        }
    kc_buf_free(&f);
}

/* A JPEG segment: marker, big-endian length (itself included), then the payload. */
static void put_segment(kc_buf_t *b, unsigned char marker, const void *payload, size_t n)
{
    unsigned char head[4] = {0xff, marker, (unsigned char)((n + 2) >> 8),
                             (unsigned char)((n + 2) & 0xff)};
    kc_buf_append(b, head, 4);
    kc_buf_append(b, payload, n);
}

static void test_jpeg_segments_before_the_frame(void **state)
{
    (void)state;
    kc_buf_t f = {0}, j = {0}, out = {0};
    make_file(64, 40, 0, JPEG, &f);
    /* SOI, then APP1 (Exif-like, holding what looks like a SOF0 of another size), APP2, a
     * comment, APP15 of 1000 bytes, fill bytes before a marker, then the real file's
     * segments. */
    APPEND(&j, "\xff\xd8");
    static const unsigned char fake_sof[] = {'E', 'x', 'i', 'f', 0, 0, 0xff, 0xc0, 0, 17, 8,
                                             0x7f, 0xff, 0x7f, 0xff, 3};
    put_segment(&j, 0xe1, fake_sof, sizeof(fake_sof));
    put_segment(&j, 0xe2, "", 0);
    put_segment(&j, 0xfe, "made in a test", 14);
    unsigned char big[1000];
    memset(big, 0xff, sizeof(big));
    put_segment(&j, 0xef, big, sizeof(big));
    APPEND(&j, "\xff\xff\xff");
    kc_buf_append(&j, f.data + 2, f.len - 2);
    expect_dims(j.data, j.len, "image/jpeg", 64, 40);
    /* libjpeg reads it the same way */
    int w, h;
    char err[128];
    assert_int_equal(
        kc_img_thumbnail(j.data, j.len, "image/jpeg", 32, MAX_PIXELS, &out, &w, &h, err,
                         sizeof(err)),
        0);
    assert_int_equal(w, 64);
    assert_int_equal(h, 40);
    expect_dims(out.data, out.len, "image/webp", 32, 20);

    /* no frame header before the scan, an end, or a segment running past the file */
    kc_buf_reset(&j);
    APPEND(&j, "\xff\xd8\xff\xe0\x00\x04xx\xff\xda\x00\x02");
    expect_no_dims(j.data, j.len, "image/jpeg");
    kc_buf_reset(&j);
    APPEND(&j, "\xff\xd8\xff\xd9");
    expect_no_dims(j.data, j.len, "image/jpeg");
    kc_buf_reset(&j);
    APPEND(&j, "\xff\xd8\xff\xe0\x01\x00xx\xff\xc0\x00\x11\x08\x00\x10\x00\x10");
    expect_no_dims(j.data, j.len, "image/jpeg");
    /* a length below 2, a byte other than 0xff where a marker belongs */
    kc_buf_reset(&j);
    APPEND(&j, "\xff\xd8\xff\xe0\x00\x01\xff\xc0\x00\x11\x08\x00\x10\x00\x10");
    expect_no_dims(j.data, j.len, "image/jpeg");
    kc_buf_reset(&j);
    APPEND(&j, "\xff\xd8\x00\xff\xc0\x00\x11\x08\x00\x10\x00\x10");
    expect_no_dims(j.data, j.len, "image/jpeg");
    /* SOF2 (progressive) after a restart marker, which has no length */
    kc_buf_reset(&j);
    APPEND(&j, "\xff\xd8\xff\xd0\xff\xc2\x00\x11\x08\x01\x02\x03\x04\x03");
    expect_dims(j.data, j.len, "image/jpeg", 0x0304, 0x0102);
    kc_buf_free(&f);
    kc_buf_free(&j);
    kc_buf_free(&out);
}

/* ---- kc_img_thumbnail ---- */

/* Thumbnails file (of type) within box, checks it is WebP of want_w x want_h and that the
 * original's size came back. */
static void expect_thumb(const kc_buf_t *file, const char *type, int box, int ow, int oh,
                         int want_w, int want_h)
{
    kc_buf_t out = {0};
    int w = -1, h = -1;
    char err[128] = "unset";
    int rc = kc_img_thumbnail(file->data, file->len, type, box, MAX_PIXELS, &out, &w, &h, err,
                              sizeof(err));
    if (rc != 0)
        fail_msg("%s: %s", type, err);
    assert_int_equal(w, ow);
    assert_int_equal(h, oh);
    assert_true(out.len > 0);
    assert_string_equal(kc_media_sniff(out.data, out.len), "image/webp");
    expect_dims(out.data, out.len, "image/webp", want_w, want_h);
    gdImagePtr im = gdImageCreateFromWebpPtr((int)out.len, out.data);
    assert_non_null(im);
    assert_int_equal(gdImageSX(im), want_w);
    assert_int_equal(gdImageSY(im), want_h);
    gdImageDestroy(im);
    kc_buf_free(&out);
}

static void test_thumbnail_scales_down(void **state)
{
    (void)state;
    kc_buf_t f = {0};
    make_file(1000, 500, 0, PNG, &f);
    expect_thumb(&f, "image/png", 320, 1000, 500, 320, 160);
    make_file(50, 1000, 0, PNG, &f);
    expect_thumb(&f, "image/png", 320, 50, 1000, 16, 320);
    /* a side never rounds down to nothing */
    make_file(2000, 3, 0, PNG, &f);
    expect_thumb(&f, "image/png", 100, 2000, 3, 100, 1);
    /* every type, and an interlaced PNG, a progressive JPEG, an interlaced GIF */
    for (fmt_t fmt = PNG; fmt <= WEBP_LOSSLESS; fmt++) {
        make_file(400, 300, 1, fmt, &f);
        expect_thumb(&f, type_of[fmt], 200, 400, 300, 200, 150);
    }
    gdImagePtr im = make_image(90, 60, 0);
    gdImageInterlace(im, 1);
    for (fmt_t fmt = PNG; fmt <= GIF; fmt++) {
        kc_buf_reset(&f);
        encode(im, fmt, &f);
        expect_thumb(&f, type_of[fmt], 30, 90, 60, 30, 20);
    }
    gdImageDestroy(im);
    kc_buf_free(&f);
}

static void test_thumbnail_never_enlarges(void **state)
{
    (void)state;
    kc_buf_t f = {0};
    make_file(100, 50, 0, PNG, &f);
    expect_thumb(&f, "image/png", 320, 100, 50, 100, 50);
    make_file(320, 320, 0, JPEG, &f);
    expect_thumb(&f, "image/jpeg", 320, 320, 320, 320, 320);
    make_file(1, 1, 0, GIF, &f);
    expect_thumb(&f, "image/gif", 320, 1, 1, 1, 1);
    kc_buf_free(&f);
}

/* Transparent pixels stay transparent, opaque ones opaque (PNG with alpha; a GIF's
 * transparent colour). */
static void test_thumbnail_keeps_alpha(void **state)
{
    (void)state;
    kc_buf_t f = {0}, out = {0};
    int w, h;
    char err[128];
    make_file(200, 100, 1, PNG, &f);
    assert_int_equal(kc_img_thumbnail(f.data, f.len, "image/png", 100, MAX_PIXELS, &out, &w,
                                      &h, err, sizeof(err)),
                     0);
    gdImagePtr im = gdImageCreateFromWebpPtr((int)out.len, out.data);
    assert_non_null(im);
    assert_int_equal(gdTrueColorGetAlpha(gdImageGetTrueColorPixel(im, 5, 25)),
                     gdAlphaTransparent);
    assert_int_equal(gdTrueColorGetAlpha(gdImageGetTrueColorPixel(im, 95, 25)), gdAlphaOpaque);
    gdImageDestroy(im);

    gdImagePtr pal = gdImageCreate(60, 60);
    assert_non_null(pal);
    int clear = gdImageColorAllocate(pal, 255, 255, 255);
    int red = gdImageColorAllocate(pal, 255, 0, 0);
    assert_true(clear >= 0 && red >= 0);
    gdImageColorTransparent(pal, clear);
    gdImageFilledRectangle(pal, 30, 0, 59, 59, red);
    kc_buf_reset(&f);
    encode(pal, GIF, &f);
    gdImageDestroy(pal);
    kc_buf_reset(&out);
    assert_int_equal(kc_img_thumbnail(f.data, f.len, "image/gif", 30, MAX_PIXELS, &out, &w, &h,
                                      err, sizeof(err)),
                     0);
    im = gdImageCreateFromWebpPtr((int)out.len, out.data);
    assert_non_null(im);
    assert_int_equal(gdImageSX(im), 30);
    assert_int_equal(gdTrueColorGetAlpha(gdImageGetTrueColorPixel(im, 2, 15)),
                     gdAlphaTransparent);
    int c = gdImageGetTrueColorPixel(im, 27, 15);
    assert_int_equal(gdTrueColorGetAlpha(c), gdAlphaOpaque);
    assert_true(gdTrueColorGetRed(c) > 200 && gdTrueColorGetGreen(c) < 50);
    gdImageDestroy(im);
    kc_buf_free(&f);
    kc_buf_free(&out);
}

/* The first frame of an animated GIF. */
static void test_thumbnail_of_an_animated_gif(void **state)
{
    (void)state;
    gdImagePtr a = gdImageCreate(80, 40), b = gdImageCreate(80, 40);
    assert_non_null(a);
    assert_non_null(b);
    assert_true(gdImageColorAllocate(a, 0, 0, 255) >= 0);
    assert_true(gdImageColorAllocate(b, 0, 255, 0) >= 0);
    kc_buf_t f = {0}, out = {0};
    int size;
    void *p = gdImageGifAnimBeginPtr(a, &size, 1, 0);
    assert_non_null(p);
    kc_buf_append(&f, p, (size_t)size);
    gdFree(p);
    gdImagePtr frames[] = {a, b};
    for (int i = 0; i < 2; i++) {
        p = gdImageGifAnimAddPtr(frames[i], &size, 1, 0, 0, 10, gdDisposalNone, NULL);
        assert_non_null(p);
        kc_buf_append(&f, p, (size_t)size);
        gdFree(p);
    }
    p = gdImageGifAnimEndPtr(&size);
    assert_non_null(p);
    kc_buf_append(&f, p, (size_t)size);
    gdFree(p);
    gdImageDestroy(a);
    gdImageDestroy(b);

    int w, h;
    char err[128];
    assert_int_equal(kc_img_thumbnail(f.data, f.len, "image/gif", 40, MAX_PIXELS, &out, &w, &h,
                                      err, sizeof(err)),
                     0);
    assert_int_equal(w, 80);
    assert_int_equal(h, 40);
    gdImagePtr im = gdImageCreateFromWebpPtr((int)out.len, out.data);
    assert_non_null(im);
    assert_int_equal(gdImageSX(im), 40);
    assert_int_equal(gdImageSY(im), 20);
    int c = gdImageGetTrueColorPixel(im, 20, 10);
    assert_true(gdTrueColorGetBlue(c) > 200 && gdTrueColorGetGreen(c) < 50);
    gdImageDestroy(im);
    kc_buf_free(&f);
    kc_buf_free(&out);
}

/* A real PNG whose IHDR says w x h, its CRC made again so that only the size is wrong. */
static void make_png_claiming(kc_buf_t *f, uint32_t w, uint32_t h)
{
    make_file(4, 4, 0, PNG, f);
    unsigned char *ihdr = (unsigned char *)f->data + 8;
    assert_memory_equal(ihdr + 4, "IHDR", 4);
    for (int i = 0; i < 4; i++) {
        ihdr[8 + i] = (unsigned char)(w >> (24 - 8 * i));
        ihdr[12 + i] = (unsigned char)(h >> (24 - 8 * i));
    }
    uLong crc = crc32(0L, ihdr + 4, 17); /* the type and the 13 bytes of data */
    for (int i = 0; i < 4; i++)
        ihdr[21 + i] = (unsigned char)(crc >> (24 - 8 * i));
}

static void expect_refused(const kc_buf_t *f, const char *type, long long max_pixels,
                           const char *reason, int want_w, int want_h)
{
    kc_buf_t out = {0};
    kc_buf_append(&out, "kept", 4);
    int w = -1, h = -1;
    char err[128] = "";
    assert_int_equal(kc_img_thumbnail(f->data, f->len, type, 320, max_pixels, &out, &w, &h, err,
                                      sizeof(err)),
                     -1);
    assert_non_null(strstr(err, reason));
    assert_int_equal(w, want_w);
    assert_int_equal(h, want_h);
    assert_int_equal(out.len, 4); /* out as it was */
    assert_string_equal(out.data, "kept");
    kc_buf_free(&out);
}

static void test_decompression_bombs_refused_unread(void **state)
{
    (void)state;
    kc_buf_t f = {0};
    make_png_claiming(&f, 70000, 70000);
    expect_dims(f.data, f.len, "image/png", 70000, 70000);
    expect_refused(&f, "image/png", MAX_PIXELS, "too large (70000x70000)", 70000, 70000);
    /* within a side's limit, beyond the pixel budget */
    make_png_claiming(&f, 3000, 2000);
    expect_refused(&f, "image/png", MAX_PIXELS, "too large (3000x2000)", 3000, 2000);
    /* one side too long, the other small */
    make_png_claiming(&f, 65536, 1);
    expect_refused(&f, "image/png", MAX_PIXELS, "too large", 65536, 1);
    /* the format's own limits: 0, and 2^31 and above */
    make_png_claiming(&f, 0, 10);
    expect_no_dims(f.data, f.len, "image/png");
    expect_refused(&f, "image/png", MAX_PIXELS, "not a PNG image", 0, 0);
    make_png_claiming(&f, 0x80000000u, 10);
    expect_no_dims(f.data, f.len, "image/png");
    /* within the budget, the lie is libpng's to find: its data is for 4x4 */
    make_png_claiming(&f, 64, 64);
    expect_refused(&f, "image/png", MAX_PIXELS, "could not be decoded", 64, 64);
    /* a GIF's screen of 65535 x 65535 */
    kc_buf_reset(&f);
    APPEND(&f, "GIF89a\xff\xff\xff\xff\x00\x00\x00,\0\0\0\0\1\0\1\0\0\2\2D\1\0;");
    expect_refused(&f, "image/gif", MAX_PIXELS, "too large (65535x65535)", 65535, 65535);
    /* WebP's extended canvas of 2^24 x 2^24 */
    kc_buf_reset(&f);
    APPEND(&f, "RIFF\x16\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0\xff\xff\xff\xff\xff\xff");
    expect_dims(f.data, f.len, "image/webp", 1 << 24, 1 << 24);
    expect_refused(&f, "image/webp", MAX_PIXELS, "too large", 1 << 24, 1 << 24);
    kc_buf_free(&f);
}

static void test_wrong_or_broken_files_refused(void **state)
{
    (void)state;
    kc_buf_t f = {0};
    make_file(40, 30, 0, PNG, &f);
    /* PNG bytes declared as another type */
    expect_refused(&f, "image/jpeg", MAX_PIXELS, "not a JPEG image", 0, 0);
    expect_refused(&f, "image/webp", MAX_PIXELS, "not a WebP image", 0, 0);
    expect_refused(&f, "application/pdf", MAX_PIXELS, "unsupported", 0, 0);
    expect_refused(&f, NULL, MAX_PIXELS, "unsupported", 0, 0);
    /* a bad box, an empty file, a file too large for libgd (never read) */
    kc_buf_t out = {0};
    int w, h;
    char err[128];
    assert_int_equal(kc_img_thumbnail(f.data, f.len, "image/png", 0, MAX_PIXELS, &out, &w, &h,
                                      err, sizeof(err)),
                     -1);
    assert_string_equal(err, "invalid thumbnail size");
    assert_int_equal(kc_img_thumbnail(f.data, 0, "image/png", 32, MAX_PIXELS, &out, &w, &h, err,
                                      sizeof(err)),
                     -1);
    assert_string_equal(err, "the file is empty");
    assert_int_equal(kc_img_thumbnail(f.data, (size_t)INT_MAX + 1, "image/png", 32, MAX_PIXELS,
                                      &out, &w, &h, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "the file is too large");
    assert_int_equal(out.len, 0);
    /* a reason cut short to fit err */
    char small[8];
    assert_int_equal(kc_img_thumbnail(f.data, f.len, "image/gif", 32, MAX_PIXELS, &out, &w, &h,
                                      small, sizeof(small)),
                     -1);
    assert_string_equal(small, "not a G");
    /* the header right, the pixels cut off or broken: decoders refuse (and say nothing) */
    kc_buf_t cut = {0};
    make_file(300, 200, 0, PNG, &f);
    kc_buf_append(&cut, f.data, 60);
    expect_refused(&cut, "image/png", MAX_PIXELS, "could not be decoded", 300, 200);
    make_file(300, 200, 0, WEBP, &f);
    kc_buf_reset(&cut);
    kc_buf_append(&cut, f.data, f.len / 2);
    expect_refused(&cut, "image/webp", MAX_PIXELS, "could not be decoded", 300, 200);
    make_file(300, 200, 0, GIF, &f);
    kc_buf_reset(&cut);
    kc_buf_append(&cut, f.data, 20);
    expect_refused(&cut, "image/gif", MAX_PIXELS, "could not be decoded", 300, 200);
    kc_buf_free(&cut);
    kc_buf_free(&out);
    kc_buf_free(&f);
}

/* The thumbnail is appended to what out holds. */
static void test_thumbnail_appends(void **state)
{
    (void)state;
    kc_buf_t f = {0}, out = {0};
    make_file(20, 10, 0, JPEG, &f);
    kc_buf_append(&out, "head", 4);
    int w, h;
    char err[128];
    assert_int_equal(kc_img_thumbnail(f.data, f.len, "image/jpeg", 10, MAX_PIXELS, &out, &w, &h,
                                      err, sizeof(err)),
                     0);
    assert_memory_equal(out.data, "head", 4);
    expect_dims(out.data + 4, out.len - 4, "image/webp", 10, 5);
    kc_buf_free(&f);
    kc_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sniff),
        cmocka_unit_test(test_supported),
        cmocka_unit_test(test_dimensions_of_each_type),
        cmocka_unit_test(test_truncated_headers),
        cmocka_unit_test(test_jpeg_segments_before_the_frame),
        cmocka_unit_test(test_thumbnail_scales_down),
        cmocka_unit_test(test_thumbnail_never_enlarges),
        cmocka_unit_test(test_thumbnail_keeps_alpha),
        cmocka_unit_test(test_thumbnail_of_an_animated_gif),
        cmocka_unit_test(test_decompression_bombs_refused_unread),
        cmocka_unit_test(test_wrong_or_broken_files_refused),
        cmocka_unit_test(test_thumbnail_appends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
