/* A containment probe for tier 1's system-call filter: each mode tries one
 * way out that the filter must close, prints "escaped: MODE" and exits 0
 * if it worked, or the error and exits 1 if the kernel refused it. A
 * filter that kills the call kills the probe (SIGSYS) instead.
 *
 *   clone-ns   clone(CLONE_NEWUSER|CLONE_NEWNET): namespaces unshare(2)
 *              may not make (then CAP_NET_ADMIN in the new one)
 *   clone3-ns  the same through clone3(2), whose flags a filter cannot read
 *   netlink    socket(AF_NETLINK): the route to configuring interfaces
 *   inet       socket(AF_INET): no stage needs one
 *   tiocsti    ioctl(0, TIOCSTI): pushing input into an inherited terminal
 *
 * Built statically by tests/sandbox.rs so it runs in the sandbox's root. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int escaped(const char *mode) {
    printf("escaped: %s\n", mode);
    return 0;
}

static int refused(const char *mode) {
    printf("refused: %s: %s\n", mode, strerror(errno));
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: escape-probe clone-ns|clone3-ns|netlink|inet|tiocsti\n");
        return 2;
    }
    const char *mode = argv[1];
    if (strcmp(mode, "clone-ns") == 0) {
        long pid = syscall(SYS_clone, CLONE_NEWUSER | CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0);
        if (pid == 0) _exit(0);
        if (pid < 0) return refused(mode);
        waitpid((pid_t)pid, 0, 0);
        return escaped(mode);
    }
    if (strcmp(mode, "clone3-ns") == 0) {
        struct clone_args args;
        memset(&args, 0, sizeof args);
        args.flags = CLONE_NEWUSER | CLONE_NEWNET;
        args.exit_signal = SIGCHLD;
        long pid = syscall(SYS_clone3, &args, sizeof args);
        if (pid == 0) _exit(0);
        if (pid < 0) return refused(mode);
        waitpid((pid_t)pid, 0, 0);
        return escaped(mode);
    }
    if (strcmp(mode, "netlink") == 0) {
        if (socket(AF_NETLINK, SOCK_RAW, 0) < 0) return refused(mode);
        return escaped(mode);
    }
    if (strcmp(mode, "inet") == 0) {
        if (socket(AF_INET, SOCK_STREAM, 0) < 0) return refused(mode);
        return escaped(mode);
    }
    if (strcmp(mode, "tiocsti") == 0) {
        char c = 'x';
        /* Without a terminal the kernel answers ENOTTY: the call reached
         * it, which is what the filter must prevent. */
        if (ioctl(0, TIOCSTI, &c) < 0 && errno != ENOTTY) return refused(mode);
        return escaped(mode);
    }
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
