/* A containment probe: tries to ptrace(PTRACE_ATTACH) the process PID
 * given as its argument, or, given "child", a child of its own (the
 * positive control: that must work where ptrace is allowed at all).
 * Prints "attached" and exits 0 on success, the error and exits 1 if not.
 * Built statically by tests/sandbox.rs so it runs in every tier's root. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    pid_t target;
    if (argc != 2) {
        fprintf(stderr, "usage: ptrace-probe PID|child\n");
        return 2;
    }
    if (strcmp(argv[1], "child") == 0) {
        target = fork();
        if (target == 0) {
            pause();
            _exit(0);
        }
    } else {
        target = (pid_t)atoi(argv[1]);
    }
    long r = ptrace(PTRACE_ATTACH, target, NULL, NULL);
    int err = errno;
    if (strcmp(argv[1], "child") == 0)
        kill(target, SIGKILL);
    if (r == 0) {
        printf("attached\n");
        return 0;
    }
    printf("ptrace(PTRACE_ATTACH, %d): %s\n", (int)target, strerror(err));
    return 1;
}
