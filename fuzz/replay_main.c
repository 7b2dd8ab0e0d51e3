/* replay_main.c - runs a fuzz driver without libFuzzer: every file named on the command line,
 * or every file of every folder named (a corpus), goes once through LLVMFuzzerTestOneInput.
 * CTest runs each corpus this way (fuzz_replay_<target>), in the normal build and under
 * ASan+UBSan, so an input that once crashed a parser keeps being tried. Fails when a
 * folder holds no input at all (a corpus that went missing). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Drivers without set-up leave this undefined. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, len = 0;
    unsigned char *buf = malloc(cap);
    int rc = buf ? 0 : -1;
    while (rc == 0) {
        if (len == cap) {
            unsigned char *more = realloc(buf, cap * 2);
            if (!more) {
                rc = -1;
                break;
            }
            buf = more;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f))
        rc = -1;
    if (fclose(f) != 0)
        rc = -1;
    if (rc == 0) {
        /* An exact-size copy, so ASan sees a read one byte past the input. */
        unsigned char *exact = malloc(len ? len : 1);
        if (!exact) {
            rc = -1;
        } else {
            memcpy(exact, buf, len);
            (void)LLVMFuzzerTestOneInput(exact, len);
            free(exact);
        }
    }
    free(buf);
    if (rc != 0)
        fprintf(stderr, "replay: cannot read %s\n", path);
    return rc;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Every regular file of dir, in name order; the count in *n. */
static int run_dir(const char *dir, size_t *n)
{
    struct dirent **names = NULL;
    int count = scandir(dir, &names, NULL, by_name);
    if (count < 0) {
        fprintf(stderr, "replay: cannot list %s: %s\n", dir, strerror(errno));
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < count; i++) {
        char path[4096];
        struct stat st;
        int len = snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
        if (rc == 0 && len > 0 && (size_t)len < sizeof(path) && stat(path, &st) == 0 &&
            S_ISREG(st.st_mode)) {
            if (run_file(path) != 0)
                rc = -1;
            else
                (*n)++;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    if (LLVMFuzzerInitialize && LLVMFuzzerInitialize(&argc, &argv) != 0)
        return 1;
    for (int a = 1; a < argc; a++) {
        struct stat st;
        size_t n = 0;
        if (stat(argv[a], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[a], strerror(errno));
            return 1;
        }
        if (S_ISDIR(st.st_mode)) {
            if (run_dir(argv[a], &n) != 0)
                return 1;
            if (n == 0) {
                fprintf(stderr, "replay: %s holds no input\n", argv[a]);
                return 1;
            }
        } else {
            if (run_file(argv[a]) != 0)
                return 1;
            n = 1;
        }
        printf("replay: %zu inputs from %s\n", n, argv[a]);
    }
    return 0;
}
