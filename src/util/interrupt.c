/*
 * interrupt.c: record SIGINT / SIGTERM for the job to stop (see
 * interrupt.h).
 */
#define _GNU_SOURCE
#include "interrupt.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t interrupt_sig;

static void interrupt_handler(int sig)
{
    interrupt_sig = sig;
}

void interrupt_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = interrupt_handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int interrupt_pending(void)
{
    return interrupt_sig;
}

int interrupt_check(struct df_error *err)
{
    if (!interrupt_sig)
        return 0;
    return df_fail(err, DF_INTERRUPTED, 0, "", -1, "interrupted");
}
