/**
 * Known causes of a failed dockerd start, recognised in its log, each with
 * what to do about it.
 *
 * @since 0.1.0
 */
import { Diagnosis } from "./errors.js"

export { Diagnosis } from "./errors.js"

interface KnownCause {
  readonly cause: string
  readonly pattern: RegExp
  readonly summary: (match: RegExpExecArray) => string
  readonly hint: string
}

/** Most specific first: the first cause whose pattern matches a line wins. */
const KNOWN_CAUSES: ReadonlyArray<KnownCause> = [
  {
    cause: "unknown-flag",
    pattern: /unknown (?:flag|shorthand flag): ('?-[^\s']+'?)/,
    summary: (m) => `dockerd does not know the flag ${m[1]}`,
    hint: "Remove the flag, or check it against `dockerd --help` of this Docker version."
  },
  {
    cause: "pidfile-in-use",
    pattern: /pid file found, ensure docker is not running/,
    summary: () => "another dockerd owns the pidfile",
    hint: "Stop the other daemon, or give this one its own --pidfile."
  },
  {
    cause: "devices-cgroup-missing",
    pattern: /Devices cgroup isn't mounted/,
    summary: () => "the devices cgroup controller is not mounted",
    hint: "On cgroup v1 mount it (mount -t cgroup -o devices devices /sys/fs/cgroup/devices); under gVisor this runsc release cannot provide it."
  },
  {
    cause: "containerd-timeout",
    pattern: /timeout waiting for containerd to start/,
    summary: () => "containerd did not start in time",
    hint: "An old containerd may still be exiting: wait until it is gone before starting again, or use another --exec-root."
  },
  {
    cause: "iptables",
    pattern: /iptables|ip6tables/i,
    summary: () => "iptables failed",
    hint: "Use --iptables=false --ip6tables=false (the sandbox profile), or install iptables."
  },
  {
    cause: "socket-is-directory",
    pattern: /can't create unix socket .*is a directory/,
    summary: () => "a directory stands at the socket path",
    hint: "Remove the directory or choose another --socket."
  },
  {
    cause: "socket-unavailable",
    pattern: /can't create unix socket/,
    summary: () => "the daemon could not create its socket",
    hint: "Check that the socket's directory exists and is writable, and that the path is not taken."
  },
  {
    cause: "graph-driver",
    pattern: /graphdriver|graph driver|storage-driver|storage driver|driver not supported/i,
    summary: () => "the storage driver could not be initialised",
    hint: "Try --storage-driver=vfs (the sandbox profile), or put the data-root on a filesystem that supports overlay2."
  },
  {
    cause: "disk-full",
    pattern: /no space left on device/i,
    summary: () => "the disk is full",
    hint: "Free space on the filesystem of the data-root and exec-root."
  },
  {
    cause: "read-only-filesystem",
    pattern: /read-only file system/i,
    summary: () => "a directory the daemon writes to is on a read-only filesystem",
    hint: "Put the data-root, exec-root, pidfile and socket on a writable filesystem."
  },
  {
    cause: "permission-denied",
    pattern: /permission denied|operation not permitted/i,
    summary: () => "permission denied",
    hint: "Run dockerd as root (or rootless with its own setup), and check the permissions of its directories."
  },
  {
    cause: "bad-config",
    pattern: /unable to configure the Docker daemon with file|unable to parse logging level/,
    summary: () => "the daemon configuration is invalid",
    hint: "Fix daemon.json or the flag value the log line names."
  },
  {
    cause: "netns-missing",
    pattern: /Cannot open network namespace "?([^":]+)"?/,
    summary: (m) => `the network namespace ${m[1]} does not exist`,
    hint: "Create it first (ip netns add NAME), or use --network private."
  },
  {
    cause: "address-in-use",
    pattern: /address already in use/,
    summary: () => "the listening address is taken",
    hint: "Another daemon listens there: stop it or choose another --socket."
  }
]

/** Lines dockerd logs at a level that cannot be the fatal one. */
const CHATTER = /level=(?:debug|info|warning)\b/

/**
 * Causes that show only in warnings when the fatal line is generic: with a
 * full data-root containerd logs `no space left on device` as warnings and
 * dockerd's last words are `failed to dial …containerd.sock: … not
 * implemented`.
 */
const ROOT_CAUSES_IN_WARNINGS: ReadonlySet<string> = new Set(["disk-full", "read-only-filesystem"])
const WARNING = /level=warning\b/

const match = (line: string, causes: ReadonlyArray<KnownCause>): Diagnosis | undefined => {
  for (const known of causes) {
    const found = known.pattern.exec(line)
    if (found !== null) {
      return new Diagnosis({
        cause: known.cause,
        summary: known.summary(found),
        hint: known.hint,
        line: line.slice(0, 500)
      })
    }
  }
  return undefined
}

/**
 * The known cause shown by the log lines, read from the last line back (the
 * fatal line is usually the last); informational lines are skipped. When no
 * line but warnings shows a cause, a full or read-only filesystem named in a
 * warning is the diagnosis.
 *
 * @since 0.1.0
 * @category diagnosis
 */
export const diagnose = (logTail: ReadonlyArray<string>): Diagnosis | undefined => {
  for (let i = logTail.length - 1; i >= 0; i--) {
    const line = logTail[i] ?? ""
    if (CHATTER.test(line)) continue
    const found = match(line, KNOWN_CAUSES)
    if (found !== undefined) return found
  }
  const rootCauses = KNOWN_CAUSES.filter((known) => ROOT_CAUSES_IN_WARNINGS.has(known.cause))
  for (let i = logTail.length - 1; i >= 0; i--) {
    const line = logTail[i] ?? ""
    if (!WARNING.test(line)) continue
    const found = match(line, rootCauses)
    if (found !== undefined) return found
  }
  return undefined
}
