// Kernel-version differences in the structures we read, in one place.
#ifndef KEYTRAIL_CORE_FIXES_BPF_H
#define KEYTRAIL_CORE_FIXES_BPF_H

#include "vmlinux.h"

#include <bpf/bpf_core_read.h>

// v5.5 (commit cf25e24db61c) renamed task_struct::real_start_time to
// start_boottime. /proc/PID/stat's starttime is derived from it, which is why
// the exec_id uses it rather than start_time (monotonic, misses suspend).
struct task_struct___pre55 {
	u64 real_start_time;
} __attribute__((preserve_access_index));

static __always_inline __u64 task_start_boottime(struct task_struct *task)
{
	if (bpf_core_field_exists(task->start_boottime))
		return BPF_CORE_READ(task, start_boottime);
	return BPF_CORE_READ((struct task_struct___pre55 *)task, real_start_time);
}

#endif
