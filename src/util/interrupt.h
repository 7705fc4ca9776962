/*
 * interrupt.h: Ctrl-C and SIGTERM stop a job cleanly (docs/design.md,
 * "Errors and exit codes": 130, "interrupted", how to resume).
 *
 * interrupt_install() sets handlers for SIGINT and SIGTERM that only
 * record the signal (no SA_RESTART: a blocked read returns EINTR).  Long
 * loops (the pipeline's workers and writer, the receiving loop of a
 * remote source) poll interrupt_pending() and fail with DF_INTERRUPTED;
 * the caller then removes what it created and says how far it got.
 */
#ifndef DF_INTERRUPT_H
#define DF_INTERRUPT_H

#include <stdbool.h>

#include "error.h"

void interrupt_install(void);
/* The signal that arrived (SIGINT, SIGTERM), or 0. */
int interrupt_pending(void);
/* DF_INTERRUPTED "interrupted" into err when a signal arrived: -1, else
 * 0. */
int interrupt_check(struct df_error *err);

#endif
