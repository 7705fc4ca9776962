/*
 * test.h: the few macros the C unit tests share.  A failed CHECK prints
 * where and counts; main returns test_result() (0 ok, 1 failed, 77 skip).
 */
#ifndef DF_TEST_H
#define DF_TEST_H

#include <stdio.h>
#include <stdlib.h>

static int test_failures;
static int test_checks;

#define CHECK(cond)                                                        \
    do {                                                                   \
        test_checks++;                                                     \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,         \
                    __LINE__, #cond);                                      \
            test_failures++;                                               \
        }                                                                  \
    } while (0)

static inline int test_result(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, test_checks, test_failures);
    return test_failures ? 1 : 0;
}

#endif
