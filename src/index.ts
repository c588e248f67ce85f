/**
 * sandbox-docker: start a Docker daemon, know the moment it is ready, say
 * exactly why when it is not, supervise it and stop it cleanly.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Containerd from "./Containerd.js"
/** @since 0.1.0 */
export * as DaemonEvent from "./DaemonEvent.js"
/** @since 0.1.0 */
export * as Diagnosis from "./Diagnosis.js"
/** @since 0.1.0 */
export * as Dockerd from "./Dockerd.js"
/** @since 0.1.0 */
export * as DockerdConfig from "./DockerdConfig.js"
/** @since 0.1.0 */
export * as DockerHost from "./DockerHost.js"
/** @since 0.1.0 */
export * as DockerdSettings from "./DockerdSettings.js"
/** @since 0.1.0 */
export * as DockerEngine from "./DockerEngine.js"
/** @since 0.1.0 */
export * from "./errors.js"
/** @since 0.2.0 */
export * as Gvisor from "./Gvisor.js"
/** @since 0.1.0 */
export * as LocalProcessManager from "./LocalProcessManager.js"
/** @since 0.1.0 */
export * as Preflight from "./Preflight.js"
/** @since 0.1.0 */
export * as Probe from "./Probe.js"
/** @since 0.1.0 */
export * as ProcessManager from "./ProcessManager.js"
/** @since 0.1.0 */
export * as ProcessStatus from "./ProcessStatus.js"
/** @since 0.1.0 */
export * as Readiness from "./Readiness.js"
/** @since 0.1.0 */
export * as ReadinessPolicy from "./ReadinessPolicy.js"
/** @since 0.1.0 */
export * as Redaction from "./Redaction.js"
/** @since 0.1.0 */
export * as Supervisor from "./Supervisor.js"
/** @since 0.1.0 */
export * as ContainerProcessManager from "./ContainerProcessManager.js"
/** @since 0.1.0 */
export * as Sandbox from "./Sandbox.js"
/** @since 0.1.0 */
export * as SandboxDocker from "./SandboxDocker.js"
/** @since 0.1.0 */
export * as SandboxPool from "./SandboxPool.js"
/** @since 0.1.0 */
export * as SandboxCompose from "./SandboxCompose.js"
/** @since 0.1.0 */
export * as SandboxVolume from "./SandboxVolume.js"
/** @since 0.1.0 */
export * as SandboxSecurity from "./SandboxSecurity.js"
