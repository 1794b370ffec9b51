// The churn workload: what a build or a shell script does all day, in a
// tight loop. Each iteration forks, the child execs /bin/true, and the
// parent waits for it: one whole process lifecycle (fork, exec, exit) of a
// process that is not an MCP server. Sequential, so it runs on the one CPU
// it is pinned to (children inherit the pin). With "vfork" the child shares
// the parent's memory until it execs (no page tables copied): with
// churn_exit as BINARY, the fastest lifecycle a machine can run.
//   usage: churn ITERATIONS [BINARY [fork|vfork]]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000;
	char *bin = argc > 2 ? argv[2] : "/bin/true";
	char *child_argv[] = {bin, NULL};
	char *child_env[] = {"PATH=/usr/bin:/bin", NULL};
	int use_vfork = argc > 3 && strcmp(argv[3], "vfork") == 0;

	for (long i = 0; i < n; i++) {
		pid_t pid = use_vfork ? vfork() : fork();
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0) {
			execve(bin, child_argv, child_env);
			_exit(127);
		}
		int status = 0;
		if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0) {
			fprintf(stderr, "churn: %s failed\n", bin);
			return 1;
		}
	}
	return 0;
}
