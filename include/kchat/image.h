/* image.h - attachment images: what the stored bytes are, and a thumbnail of them.
 *
 * kchat-api calls these when a client finishes uploading a file to the object store: the
 * first bytes must be what the declared media type says (kc_media_sniff), and an image of a
 * type kchat decodes gets one thumbnail, made once and stored beside the original
 * (kc_img_thumbnail). Nothing here trusts the file: sizes are read from the header before
 * any pixel is decoded, and an image too large for the caller's budget is refused unread.
 */
#ifndef KCHAT_IMAGE_H
#define KCHAT_IMAGE_H

#include <stddef.h>

#include "kchat/buf.h"

/* Neither side of an image kchat decodes may exceed this (whatever max_pixels allows). */
#define KC_IMG_SIDE_MAX 65535
/* The thumbnail's WebP quality (0-100). */
#define KC_IMG_THUMB_QUALITY 80

/* The media type that the first bytes of buf announce, from a fixed table of magic numbers:
 * "image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "application/zip",
 * or NULL when none matches. The strings are static. */
const char *kc_media_sniff(const void *buf, size_t len);

/* Whether kchat decodes and thumbnails this media type (png, jpeg, gif, webp). The type is
 * compared without regard to case and takes no parameters; NULL is not supported. */
int kc_img_supported(const char *content_type);

/* Width and height read from the header of an image of content_type (PNG IHDR, GIF logical
 * screen, JPEG SOFn after walking the markers, WebP VP8/VP8L/VP8X), without decoding pixels.
 * 0, or -1 when the header is missing, truncated or not of that type (its magic number is
 * the one kc_media_sniff knows it by), or gives a width or height of 0 (or, for PNG, above
 * 2^31-1, which the format forbids); *w and *h are then 0. */
int kc_img_dimensions(const void *buf, size_t len, const char *content_type, int *w, int *h);

/* Decodes an image of content_type (its header first: more than max_pixels pixels, or a width
 * or height of 0 or above KC_IMG_SIDE_MAX, is refused before any decoding, against
 * decompression bombs), scales it to fit within box x box keeping its aspect ratio (never
 * enlarging; a side is at least 1 pixel), and encodes it as WebP (quality 80; alpha kept),
 * appended to out. Of an animated GIF, the first frame. Fills *w and *h with the ORIGINAL's
 * dimensions, as soon as its header is read (0 before that). 0, or -1 with a short reason in
 * err (fit for a client) and out as it was. A buffer larger than INT_MAX is refused.
 *
 * The first call routes libgd's warnings (which it would print on stderr) to nothing, for
 * the whole process; libpng's own warnings about a PNG still reach stderr (see image.c). */
int kc_img_thumbnail(const void *buf, size_t len, const char *content_type, int box,
                     long long max_pixels, kc_buf_t *out, int *w, int *h, char *err,
                     size_t errlen);

#endif
