//! What `--explain` says about each step: the system call(s) behind it
//! and the idea of the course notes it shows.

use super::step::Step;

impl Step {
    /// The system call(s) behind the step.
    pub fn syscall(self) -> &'static str {
        match self {
            Step::Clone => "clone(CLONE_NEW* | SIGCHLD)",
            Step::UserMaps => "write /proc/PID/setgroups (deny), /proc/PID/uid_map, /proc/PID/gid_map",
            Step::Cgroup => "mkdir /sys/fs/cgroup/.../virtlab-ID, write limits; join: write 0 to tasks (v1, by the child) or PID to cgroup.procs (v2)",
            Step::NsRoot => "setresgid(0, 0, 0); setresuid(0, 0, 0) inside the user namespace",
            Step::CgroupNs => "unshare(CLONE_NEWCGROUP)",
            Step::Propagation => "mount(NULL, \"/\", NULL, MS_REC|MS_PRIVATE, NULL)",
            Step::BindRootfs => "move_mount(idmapped tree of rootfs, rootfs) (or mount(rootfs, rootfs, NULL, MS_BIND|MS_REC, NULL)); chdir(rootfs)",
            Step::Dev => "mkdir proc, dev, tmp if missing; mount(\"tmpfs\", dev), mknod or bind null zero full random urandom tty",
            Step::Mounts => "mkdir and mount(source, rootfs/destination, type, flags, options) for each entry of the bundle's mounts (a bind remounted read-only if asked)",
            Step::PivotRoot => "pivot_root(\".\", \".\") in the rootfs; umount2(\".\", MNT_DETACH)",
            Step::Chroot => "chroot(rootfs); chdir(\"/\")",
            Step::Proc => "mount(\"proc\", rootfs/proc, \"proc\", MS_NOSUID|MS_NODEV|MS_NOEXEC)",
            Step::Sys => "mount(\"sysfs\", rootfs/sys, \"sysfs\", MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC) if the rootfs has sys (read-write with --privileged)",
            Step::ProcMasks => "mount(/dev/null or a read-only tmpfs over /proc/kcore, keys, timer_list, ...); mount(MS_BIND|MS_REMOUNT|MS_RDONLY) on /proc/sys, irq, bus, fs, sysrq-trigger",
            Step::Tmp => "mount(\"tmpfs\", rootfs/tmp, \"tmpfs\", MS_NOSUID|MS_NODEV, \"mode=1777\")",
            Step::Sysctl => "write(rootfs/proc/sys/KEY/WITH/SLASHES, value) for each of the bundle's sysctls, before /proc/sys is made read-only",
            Step::ReadOnly => "mount(NULL, \"/\", NULL, MS_REMOUNT|MS_BIND|MS_RDONLY, NULL)",
            Step::Hostname => "sethostname(name)",
            Step::Loopback => "socket(AF_INET); ioctl(SIOCSIFFLAGS, \"lo\", IFF_UP)",
            Step::Console => "open(\"/dev/ptmx\"); ioctl(TIOCSPTLCK, 0); ioctl(TIOCGPTPEER); mount(/dev/pts/N, /dev/console, MS_BIND); sendmsg(console socket, SCM_RIGHTS master); setsid(); ioctl(slave, TIOCSCTTY); dup2(slave, 0, 1, 2)",
            Step::Rlimits => "setrlimit(RLIMIT_NOFILE, RLIMIT_CORE)",
            Step::Capabilities => "prctl(PR_CAPBSET_DROP) for each capability not kept; capset(kept)",
            Step::User => "setgroups(0); setresgid(gid); setresuid(uid)",
            Step::NoNewPrivs => "prctl(PR_SET_NO_NEW_PRIVS, 1)",
            Step::Seccomp => "seccomp(SECCOMP_SET_MODE_FILTER, 0, filter): the default filter (Docker's denied calls EPERM, unknown ones ENOSYS) or a profile's (--security-opt seccomp=PROFILE.json)",
            Step::Workdir => "chdir(workdir)",
            Step::Stdio => "dup2(pipe, 1), dup2(pipe, 2)",
            Step::AwaitStart => "open(\"/proc/self/fd/N\", O_WRONLY) of the exec FIFO, which blocks until `start` opens it for reading; write(1 byte)",
            Step::CreateContainerHooks => "chdir(rootfs); for each createContainer hook: pipe2(); fork(); in the new process dup2(pipe, 0), execve(hook); write(state JSON); waitpid()",
            Step::StartContainerHooks => "for each startContainer hook: pipe2(); fork(); in the new process dup2(pipe, 0), execve(hook, inside the new root); write(state JSON); waitpid()",
            Step::Exec => "execve(command, argv, envp)",
            Step::Ready => "(the workload writes its ready line)",
            Step::Exit => "waitid(pidfd)",
        }
    }

    /// The idea of the course notes (section 2, Containers) the step shows.
    pub fn idea(self) -> &'static str {
        match self {
            Step::Clone => "a container is an ordinary host process; namespaces give it its own view of the process tree, network, users and mounts",
            Step::UserMaps => "user IDs are a namespace too: root inside maps to an ordinary ID range outside",
            Step::Cgroup => "cgroups limit and account resources: memory, CPU, number of processes",
            Step::NsRoot => "the first process becomes root of its user namespace, which is an unprivileged host id outside",
            Step::CgroupNs => "the container sees its own cgroup as the root of the cgroup tree",
            Step::Propagation => "mount namespaces: from here on, nothing mounted inside is seen by the host",
            Step::BindRootfs => "the application's files, without an OS: the image is just a directory",
            Step::Dev => "only a handful of devices, not the host's hardware",
            Step::Mounts => "the runtime mounts what the engine's config.json lists: /proc, /dev, /sys, and the files the engine prepared (hostname, resolv.conf)",
            Step::PivotRoot => "a directory seen as / (what chroot is in the notes), done so that the host's tree is gone, not just hidden",
            Step::Chroot => "a directory seen as / (chroot): without a mount namespace this can be escaped",
            Step::Proc => "process isolation: /proc lists only the container's own processes",
            Step::Sys => "/sys shows the kernel's devices; read-only, the container can look (its own network devices) but not reconfigure the host's",
            Step::ProcMasks => "/proc also shows the host kernel itself (its memory, keyrings, sysctls): those files are hidden or read-only",
            Step::Tmp => "a private scratch area in memory",
            Step::Sysctl => "some kernel parameters belong to a namespace (the network's, IPC's): the container sets its own",
            Step::ReadOnly => "immutable images: the container cannot change its own files",
            Step::Hostname => "behaves like a separate server: its own hostname (UTS namespace)",
            Step::Loopback => "its own network stack: only a loopback interface",
            Step::Console => "a terminal of the container's own: its devpts makes the pair, the engine gets the master end and the program the other",
            Step::Rlimits => "per-process limits on top of the cgroup's",
            Step::Capabilities => "isolation rests on the kernel: root inside keeps only a few privileges",
            Step::User => "the command runs as the user asked for",
            Step::NoNewPrivs => "no setuid binary can give privileges back",
            Step::Seccomp => "the container shares the host kernel, so the calls that reach host-wide state are cut off",
            Step::Workdir => "the command starts where it expects to",
            Step::Stdio => "the launcher collects the output",
            Step::AwaitStart => "engine and runtime: `create` builds the container's world, `start` lets its program run",
            Step::CreateContainerHooks => "an engine's own programs run inside the container's namespaces before its root is final (set up a device, a network)",
            Step::StartContainerHooks => "an engine's own programs run inside the container, as the program itself would, just before it",
            Step::Exec => "the host kernel runs the application directly: no guest OS to boot",
            Step::Ready => "the workload is running: containers start fast",
            Step::Exit => "the container is gone when its first process exits",
        }
    }
}
