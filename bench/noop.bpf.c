// SPDX-License-Identifier: GPL-2.0
// Empty programs for the benchmark's floors: "floor" is the shared no-op
// floor's hook set (../shared/bench/floor: sched exec/fork/exit, openat,
// read, close, connect, write); "hooks" is every tracepoint keytrail
// attaches, so the cost of our hook choice and of our code read apart.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define NOOP(sec, name) \
	SEC(sec) int name(void *ctx) { return 0; }

// The shared floor's eleven.
NOOP("tp/sched/sched_process_exec", floor_exec)
NOOP("tp/sched/sched_process_fork", floor_fork)
NOOP("tp/sched/sched_process_exit", floor_exit)
NOOP("tp/syscalls/sys_enter_openat", floor_openat_in)
NOOP("tp/syscalls/sys_exit_openat", floor_openat_out)
NOOP("tp/syscalls/sys_enter_read", floor_read_in)
NOOP("tp/syscalls/sys_exit_read", floor_read_out)
NOOP("tp/syscalls/sys_enter_close", floor_close_in)
NOOP("tp/syscalls/sys_enter_connect", floor_connect_in)
NOOP("tp/syscalls/sys_exit_connect", floor_connect_out)
NOOP("tp/syscalls/sys_enter_write", floor_write_in)

// The rest of keytrail's hooks.
NOOP("tp/syscalls/sys_enter_open", hooks_open_in)
NOOP("tp/syscalls/sys_exit_open", hooks_open_out)
NOOP("tp/syscalls/sys_enter_creat", hooks_creat_in)
NOOP("tp/syscalls/sys_exit_creat", hooks_creat_out)
NOOP("tp/syscalls/sys_enter_openat2", hooks_openat2_in)
NOOP("tp/syscalls/sys_exit_openat2", hooks_openat2_out)
NOOP("tp/syscalls/sys_enter_readv", hooks_readv_in)
NOOP("tp/syscalls/sys_exit_readv", hooks_readv_out)
NOOP("tp/syscalls/sys_enter_pread64", hooks_pread_in)
NOOP("tp/syscalls/sys_exit_pread64", hooks_pread_out)
NOOP("tp/syscalls/sys_enter_preadv", hooks_preadv_in)
NOOP("tp/syscalls/sys_exit_preadv", hooks_preadv_out)
NOOP("tp/syscalls/sys_enter_writev", hooks_writev_in)
NOOP("tp/syscalls/sys_enter_sendto", hooks_sendto_in)
NOOP("tp/syscalls/sys_enter_sendmsg", hooks_sendmsg_in)
