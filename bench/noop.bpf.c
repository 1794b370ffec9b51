// SPDX-License-Identifier: GPL-2.0
// Empty programs for the benchmark's floors: "floor" is the shared no-op
// floor's hook set (../shared/bench/floor: sched exec/fork/exit, openat,
// read, close, connect, write); "hooks" is every tracepoint keytrail
// attaches (the floor's but enter openat, enter read and enter close, and
// the rest below), so the cost of our hook choice and of our code read
// apart.
#include "vmlinux.h"

#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define NOOP(sec, name)                                                                            \
	SEC(sec) int name(void *ctx)                                                               \
	{                                                                                          \
		return 0;                                                                          \
	}

// The shared floor's eleven.
NOOP("tp/sched/sched_process_exec", f_exec)
NOOP("tp/sched/sched_process_fork", f_fork)
NOOP("tp/sched/sched_process_exit", f_exit)
NOOP("tp/syscalls/sys_enter_openat", f_openat_in)
NOOP("tp/syscalls/sys_exit_openat", f_openat_out)
NOOP("tp/syscalls/sys_enter_read", f_read_in)
NOOP("tp/syscalls/sys_exit_read", f_read_out)
NOOP("tp/syscalls/sys_enter_close", f_close_in)
NOOP("tp/syscalls/sys_enter_connect", f_connect_in)
NOOP("tp/syscalls/sys_exit_connect", f_connect_out)
NOOP("tp/syscalls/sys_enter_write", f_write_in)

// The rest of keytrail's hooks.
NOOP("tp/syscalls/sys_exit_open", h_open_out)
NOOP("tp/syscalls/sys_exit_creat", h_creat_out)
NOOP("tp/syscalls/sys_exit_openat2", h_openat2_out)
NOOP("tp/syscalls/sys_exit_readv", h_readv_out)
NOOP("tp/syscalls/sys_exit_pread64", h_pread_out)
NOOP("tp/syscalls/sys_exit_preadv", h_preadv_out)
NOOP("tp/syscalls/sys_enter_writev", h_writev_in)
NOOP("tp/syscalls/sys_enter_sendto", h_sendto_in)
NOOP("tp/syscalls/sys_enter_sendmsg", h_sendmsg_in)
