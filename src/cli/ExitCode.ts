/**
 * The exit codes of `sandbox-docker`, and which error gives which.
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 * @category constants
 */
export const ExitCode = {
  ok: 0,
  invalidInput: 2,
  dockerNotInstalled: 3,
  exitedBeforeReady: 4,
  notReady: 5,
  diedAfterReady: 6,
  /** `sandbox docker`: the docker command inside the sandbox failed. */
  dockerCommandFailed: 7,
  /** `sandbox`: the host engine could not be reached, or refused (create, remove). */
  engineFailed: 8,
  /** `sandbox exec`: the command is not in the sandbox. */
  commandNotFound: 127,
  /** A failure this project did not foresee: a bug to report. */
  internal: 70
} as const

/**
 * The help text listing the exit codes.
 *
 * @since 0.1.0
 * @category constants
 */
export const EXIT_CODES_HELP = [
  "Exit codes:",
  "  0  ok (or stopped cleanly after SIGINT/SIGTERM)",
  "  2  invalid input or configuration; a daemon already running (see --replace, down)",
  "  3  Docker (or, for sandbox docker compose, docker-compose) is not installed",
  "  4  the daemon exited before it was ready",
  "  5  not ready by the deadline",
  "  6  the daemon died or became unhealthy after ready, and no restart was left",
  "  7  sandbox docker: the docker command (or the login from the sandbox's env) failed in the sandbox",
  "  8  sandbox: the host engine could not be reached or refused (e.g. no such image)",
  "  127  sandbox exec: the command is not in the sandbox (otherwise exec exits with the command's code)"
].join("\n")

/**
 * The exit code for an error tag.
 *
 * @since 0.1.0
 * @category mapping
 */
export const forError = (tag: string): number => {
  switch (tag) {
    case "InvalidConfig":
    case "InvalidArguments":
    case "InvalidUsage":
    case "SocketModeNotApplied":
    case "PidfileInUse":
    case "DaemonAlreadyRunning":
    case "SocketPathIsDirectory":
    case "SocketInUse":
    case "DirectoryNotWritable":
    case "SandboxNotFound":
    case "OwnerNotFound":
    case "DockerNotEnabled":
    case "InvalidDockerArgument":
    case "ComposeNetworkUnsupported":
      return ExitCode.invalidInput
    case "DockerNotInstalled":
    case "BinaryNotFound":
    case "ComposeNotInstalled":
      return ExitCode.dockerNotInstalled
    case "DaemonCrashed":
    case "ExitedBeforeReady":
    case "SpawnFailed":
      return ExitCode.exitedBeforeReady
    case "DaemonNotReady":
    case "NotReadyByDeadline":
      return ExitCode.notReady
    case "DaemonDied":
    case "DaemonUnhealthy":
      return ExitCode.diedAfterReady
    case "DockerCommandFailed":
    case "DockerLoginFailed":
    case "DockerOutputInvalid":
    case "VolumeNotFound":
    case "VolumeInUse":
      return ExitCode.dockerCommandFailed
    case "SandboxCreateFailed":
    case "SandboxReapFailed":
    case "LeaseRenewFailed":
    case "IsolationNotApplied":
    case "RunscUnsuitable":
    case "EngineUnreachable":
    case "EngineBadAnswer":
      return ExitCode.engineFailed
    case "CommandNotFound":
      return ExitCode.commandNotFound
    default:
      return ExitCode.internal
  }
}
