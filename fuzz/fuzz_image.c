/* fuzz_image.c - an uploaded attachment as kchat-api reads it (lib/image.c): its magic
 * number (kc_media_sniff), its header's size under each image type (kc_img_dimensions), and
 * a thumbnail (kc_img_thumbnail) through libgd's decoders and WebP encoder.
 *
 * The input is the file. The thumbnail is asked for under the type the magic number names
 * (bytes of another type are refused at the header, before any decoding, which the driver
 * checks too), within a small box and a budget of 4 000 000 pixels.
 * Checked: a size read is at least 1x1, under a type only when the magic number is that
 * type's, and the same on a second read; a thumbnail is made only of a supported type, within
 * the budget, with the original's size given back; it is WebP, whose own header says it fits
 * the box and keeps the aspect ratio (to a pixel), never larger than the original; a refusal
 * has a reason and leaves the output as it was.
 */
#include <limits.h>
#include <string.h>

#include "fuzz.h"
#include "kchat/buf.h"
#include "kchat/image.h"

#define BOX 48
#define MAX_PIXELS 4000000LL

static const char *const types[] = {"image/png", "image/jpeg", "image/gif", "image/webp"};

static const char *const sniffed[] = {"image/png",  "image/jpeg",      "image/gif",
                                      "image/webp", "application/pdf", "application/zip"};

static int known(const char *t)
{
    for (size_t i = 0; i < sizeof(sniffed) / sizeof(sniffed[0]); i++)
        if (strcmp(t, sniffed[i]) == 0)
            return 1;
    return 0;
}

static long long absdiff(long long a, long long b)
{
    return a > b ? a - b : b - a;
}

/* The thumbnail's tw x th against the original's w x h: within the box, not enlarged, the
 * same aspect ratio but for rounding to a whole pixel (and a side kept at 1 at least). */
static void check_fit(int w, int h, int tw, int th)
{
    CHECK(tw >= 1 && th >= 1 && tw <= BOX && th <= BOX);
    CHECK(tw <= w && th <= h);
    CHECK(tw == BOX || th == BOX || (tw == w && th == h));
    /* the short side is rounded to the nearest pixel (or raised to 1): tw/th is w/h to
     * within half a pixel of it, that is |tw*h - th*w| <= max(w, h) */
    CHECK(absdiff((long long)tw * h, (long long)th * w) <= (w > h ? w : h));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *type = kc_media_sniff(data, size);
    CHECK(type == NULL || known(type));

    int dw[4], dh[4];
    for (size_t i = 0; i < 4; i++) {
        int rc = kc_img_dimensions(data, size, types[i], &dw[i], &dh[i]);
        CHECK(rc == 0 || rc == -1);
        if (rc == 0) {
            CHECK(type != NULL && strcmp(type, types[i]) == 0);
            CHECK(dw[i] >= 1 && dh[i] >= 1);
            int w2 = 0, h2 = 0;
            CHECK(kc_img_dimensions(data, size, types[i], &w2, &h2) == 0);
            CHECK(w2 == dw[i] && h2 == dh[i]);
        } else {
            CHECK(dw[i] == 0 && dh[i] == 0);
        }
    }

    /* the declared type: the sniffed one, or one the magic number does not match */
    const char *declared = type ? type : types[size % 4];
    kc_buf_t out = {0};
    int w = -1, h = -1;
    char err[128];
    int rc = kc_img_thumbnail(data, size, declared, BOX, MAX_PIXELS, &out, &w, &h, err,
                              sizeof(err));
    CHECK(rc == 0 || rc == -1);
    if (rc == 0) {
        CHECK(kc_img_supported(declared));
        CHECK(type != NULL && strcmp(type, declared) == 0);
        CHECK(w >= 1 && h >= 1 && w <= KC_IMG_SIDE_MAX && h <= KC_IMG_SIDE_MAX);
        CHECK((long long)w * h <= MAX_PIXELS);
        int tw = 0, th = 0;
        CHECK(out.len > 0);
        CHECK(strcmp(kc_media_sniff(out.data, out.len), "image/webp") == 0);
        CHECK(kc_img_dimensions(out.data, out.len, "image/webp", &tw, &th) == 0);
        /* a GIF's first frame may be smaller than its screen: only the box is sure then */
        if (strcmp(declared, "image/gif") == 0)
            CHECK(tw >= 1 && th >= 1 && tw <= BOX && th <= BOX && tw <= w && th <= h);
        else
            check_fit(w, h, tw, th);
    } else {
        CHECK(err[0] != '\0');
        CHECK(out.len == 0);
        /* a size given back is the header's */
        if (w != 0 || h != 0) {
            int i = 0;
            while (i < 4 && strcmp(types[i], declared) != 0)
                i++;
            CHECK(i < 4 && w == dw[i] && h == dh[i]);
        }
    }
    kc_buf_free(&out);
    return 0;
}
