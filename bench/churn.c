// The churn workload: what a build or a shell script does all day, in a
// tight loop. Each iteration forks, the child execs /bin/true, and the
// parent waits for it: one whole process lifecycle (fork, exec, exit) of a
// process that is not an MCP server. Sequential, so it runs on the one CPU
// it is pinned to (children inherit the pin). With "vfork" the child shares
// the parent's memory until it execs (no page tables copied): with
// churn_exit as BINARY, the fastest lifecycle a machine can run. WORDS
// arguments of 32 bytes each follow BINARY in the child's argv (a
// compiler's -I flags): the agent copies, masks and matches rules over
// argv, so a long one costs it more.
//   usage: churn ITERATIONS [BINARY [fork|vfork [WORDS]]]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000;
	char *bin = argc > 2 ? argv[2] : "/bin/true";
	char *child_env[] = {"PATH=/usr/bin:/bin", NULL};
	int use_vfork = argc > 3 && strcmp(argv[3], "vfork") == 0;
	long words = argc > 4 ? atol(argv[4]) : 0;
	if (words < 0 || words > 4096) {
		fprintf(stderr, "churn: WORDS is 0 to 4096\n");
		return 2;
	}
	char **child_argv = calloc((size_t)words + 2, sizeof(char *));
	char(*text)[33] = calloc((size_t)words + 1, 33);
	if (!child_argv || !text) {
		perror("calloc");
		return 1;
	}
	child_argv[0] = bin;
	for (long w = 0; w < words; w++) {
		snprintf(text[w], sizeof(text[w]), "-I/usr/include/churn/dir%07ld", w);
		child_argv[w + 1] = text[w];
	}

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
