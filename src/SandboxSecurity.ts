/**
 * What a sandbox container is allowed, and what that means for its user.
 *
 * Every sandbox gets a cgroup namespace of its own. A Docker-enabled sandbox
 * on runc gets what dockerd, containerd and runc inside need, found by
 * experiment (test/escape.real.test.ts shows what is left): Docker's default
 * capabilities plus `SYS_ADMIN` (mounts, namespaces) and `NET_ADMIN`
 * (iptables), a seccomp profile that refuses what none of them uses, and
 * Docker's masked and read-only `/proc` and `/sys` paths. On gVisor the
 * sandbox's kernel is gVisor's Sentry, so the capabilities are the Sentry's,
 * not the host's.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * The engine created the sandbox without a setting its isolation needs
 * (an Engine API before 1.41 drops `CgroupnsMode` without a word, leaving
 * the sandbox in the host's cgroup namespace). The sandbox is removed.
 *
 * @since 0.1.0
 * @category errors
 */
export class IsolationNotApplied extends Schema.TaggedError<IsolationNotApplied>()(
  "IsolationNotApplied",
  { image: Schema.String, setting: Schema.String, wanted: Schema.String, found: Schema.String }
) {
  override get message(): string {
    return `the engine created the sandbox from ${this.image} with ${this.setting} ${this.found}, not ${this.wanted}, so it was removed again: use Docker Engine 20.10 (API 1.41) or later`
  }
}

/**
 * What the engine reports of a created sandbox's isolation
 * (`GET /containers/{id}/json`).
 *
 * @since 0.1.0
 * @category models
 */
export const AppliedHostConfig = Schema.Struct({
  CgroupnsMode: Schema.optional(Schema.String)
})

/**
 * Checks that the engine applied what {@link hostConfig} asked for.
 *
 * @since 0.1.0
 * @category constructors
 */
export const checkApplied = (
  image: string,
  applied: typeof AppliedHostConfig.Type | undefined
): IsolationNotApplied | undefined =>
  applied?.CgroupnsMode === "private"
    ? undefined
    : new IsolationNotApplied({
        image,
        setting: "CgroupnsMode",
        wanted: "private",
        found: applied?.CgroupnsMode ?? "(not reported)"
      })

/** The runtimes a sandbox runs on. */
type Runtime = "runc" | "runsc"

/** What of a sandbox's spec decides its isolation. */
interface SecuritySpec {
  readonly runtime: Runtime
  readonly dockerEnabled: boolean
  readonly network: "host" | "none" | "bridge"
}

/**
 * The capabilities a Docker-enabled runc sandbox gets beyond Docker's
 * default set (which inner containers get by default, so the sandbox keeps
 * all of it): `SYS_ADMIN` for dockerd's and runc's mounts and namespaces,
 * `NET_ADMIN` for dockerd's iptables rules.
 *
 * @since 0.1.0
 * @category constants
 */
export const DOCKER_CAPABILITIES: ReadonlyArray<string> = ["SYS_ADMIN", "NET_ADMIN"]

/**
 * Syscalls refused (EPERM) in a Docker-enabled runc sandbox: nothing
 * dockerd, containerd or runc inside calls, and each a way into the host's
 * kernel (modules, kexec, BPF, perf, io_uring, file handles, the clock,
 * swap, quotas, fanotify on the host's filesystems).
 */
const REFUSED_SYSCALLS: ReadonlyArray<string> = [
  "acct",
  "adjtimex",
  "bpf",
  "clock_adjtime",
  "clock_settime",
  "create_module",
  "delete_module",
  "fanotify_init",
  "finit_module",
  "get_kernel_syms",
  "init_module",
  "io_uring_enter",
  "io_uring_register",
  "io_uring_setup",
  "ioperm",
  "iopl",
  "kexec_file_load",
  "kexec_load",
  "lookup_dcookie",
  "nfsservctl",
  "open_by_handle_at",
  "perf_event_open",
  "query_module",
  "quotactl",
  "quotactl_fd",
  "reboot",
  "settimeofday",
  "stime",
  "swapoff",
  "swapon",
  "_sysctl",
  "sysfs",
  "syslog",
  "uselib",
  "userfaultfd",
  "ustat",
  "vhangup"
]

/**
 * Kernel keyrings are not namespaced. They answer ENOSYS ("no keyrings"),
 * which runc takes as a kernel without them and goes on; EPERM would stop
 * it ("unable to join session keyring").
 */
const KEYRING_SYSCALLS: ReadonlyArray<string> = ["add_key", "keyctl", "request_key"]

const EPERM = 1
const ENOSYS = 38

/**
 * The seccomp profile of a Docker-enabled runc sandbox, as the Engine API
 * takes it (`SecurityOpt: ["seccomp=<json>"]`): everything allowed but
 * {@link REFUSED_SYSCALLS} and the keyrings. Unknown names on an
 * architecture are skipped by runc.
 *
 * @since 0.1.0
 * @category constants
 */
export const SECCOMP_PROFILE: string = JSON.stringify({
  defaultAction: "SCMP_ACT_ALLOW",
  architectures: [
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_ARM"
  ],
  syscalls: [
    { names: REFUSED_SYSCALLS, action: "SCMP_ACT_ERRNO", errnoRet: EPERM },
    { names: KEYRING_SYSCALLS, action: "SCMP_ACT_ERRNO", errnoRet: ENOSYS }
  ]
})

/**
 * The security fields of a sandbox container's `HostConfig`.
 *
 * - Every sandbox: `CgroupnsMode: "private"`. A sandbox sharing the host's
 *   cgroup namespace mounts the root of the host's hierarchy, whose
 *   `release_agent` the host kernel runs as root (CVE-2022-0492).
 * - Docker inside on runc: {@link DOCKER_CAPABILITIES}, {@link SECCOMP_PROFILE},
 *   AppArmor unconfined (`docker-default` refuses `mount`), Docker's masked
 *   and read-only paths kept, and IP forwarding (a sysctl of the sandbox's
 *   own network namespace) on when it has one.
 * - Docker inside on gVisor: all capabilities, which are the Sentry's.
 *
 * @since 0.1.0
 * @category constructors
 */
export const hostConfig = (spec: SecuritySpec): Readonly<Record<string, unknown>> => {
  const common = { CgroupnsMode: "private" }
  if (!spec.dockerEnabled) return common
  const forwarding = spec.network === "host" ? {} : { Sysctls: { "net.ipv4.ip_forward": "1" } }
  if (spec.runtime === "runsc") {
    return { ...common, ...forwarding, CapAdd: ["ALL"] }
  }
  return {
    ...common,
    ...forwarding,
    CapAdd: DOCKER_CAPABILITIES,
    SecurityOpt: [`seccomp=${SECCOMP_PROFILE}`, "apparmor=unconfined"]
  }
}

/**
 * A way out of a sandbox that test/escape.real.test.ts tries.
 *
 * @since 0.1.0
 * @category models
 */
export const EscapeRoute = Schema.Literal(
  "cgroup-release-agent",
  "host-block-device",
  "sysrq-trigger",
  "proc-sys-kernel",
  "host-sys-kernel",
  "kernel-module",
  "host-processes",
  "host-ptrace",
  "host-engine-socket",
  "host-namespaces"
)

/**
 * A way out of a sandbox.
 *
 * @since 0.1.0
 * @category models
 */
export type EscapeRoute = typeof EscapeRoute.Type

/**
 * What a sandbox's runtime means for the host: whose kernel its processes
 * talk to, and which known ways out stay open.
 *
 * @since 0.1.0
 * @category models
 */
export class Isolation extends Schema.Class<Isolation>("Isolation")({
  runtime: Schema.Literal("runc", "runsc"),
  /** `host`: the host's kernel, `sandbox`: a kernel of the sandbox's own (gVisor's Sentry). */
  kernel: Schema.Literal("host", "sandbox"),
  /** Known ways out that stay open (test/escape.real.test.ts tries each). */
  openRoutes: Schema.Array(EscapeRoute),
  /** What that means, in a sentence. */
  summary: Schema.String
}) {}

/**
 * The routes root in a Docker-enabled runc sandbox keeps: with
 * `CAP_SYS_ADMIN` in the host's user namespace it mounts a fresh proc or
 * sysfs (host-wide files writable) and widens its own devices cgroup. Only
 * an LSM policy or a user namespace could take that away.
 *
 * @since 0.1.0
 * @category constants
 */
export const RUNC_DOCKER_OPEN_ROUTES: ReadonlyArray<EscapeRoute> = [
  "host-block-device",
  "sysrq-trigger",
  "proc-sys-kernel",
  "host-sys-kernel"
]

/**
 * The isolation a sandbox of this spec gets.
 *
 * @since 0.1.0
 * @category constructors
 */
export const isolation = (spec: SecuritySpec): Isolation => {
  if (spec.runtime === "runsc") {
    return new Isolation({
      runtime: "runsc",
      kernel: "sandbox",
      openRoutes: [],
      summary:
        "gVisor: the sandbox's processes, Docker inside included, talk to a kernel of their own (the Sentry), not the host's"
    })
  }
  if (!spec.dockerEnabled) {
    return new Isolation({
      runtime: "runc",
      kernel: "host",
      openRoutes: [],
      summary:
        "runc: the host's kernel, behind Docker's default confinement (no CAP_SYS_ADMIN, default seccomp and masked paths)"
    })
  }
  return new Isolation({
    runtime: "runc",
    kernel: "host",
    openRoutes: RUNC_DOCKER_OPEN_ROUTES,
    summary:
      "runc with Docker inside: the host's kernel, and root with CAP_SYS_ADMIN in the host's user namespace; some routes to the host stay open: run untrusted code on gVisor (runsc)"
  })
}
