/* fuzz.h - what every driver in fuzz/ shares.
 *
 * A driver is one LLVMFuzzerTestOneInput that hands its input to the real parser of one kind
 * of outside input and then checks what came out (CHECK), so that a wrong answer is a finding
 * as much as a crash. The same driver is linked two ways (fuzz/CMakeLists.txt): with libFuzzer
 * (clang, -DKCHAT_FUZZ=ON) to search, and with replay_main.c to run its committed corpus
 * under CTest in every build, the sanitizer build included.
 */
#ifndef KCHAT_FUZZ_H
#define KCHAT_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* An invariant of the parser's answer: when it does not hold, say which and abort (libFuzzer
 * saves the input as a crash). */
#define CHECK(cond)                                                                               \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);         \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

#endif
