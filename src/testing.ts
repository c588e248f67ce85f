/**
 * Test helpers for users' own tests, in virtual time (`TestClock`):
 * scripted processes, and a scripted dockerd that `Dockerd.start`,
 * `Dockerd.layer` and `Supervisor.run` run on unchanged.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as TestDocker from "./TestDocker.js"
/** @since 0.1.0 */
export * as TestProcessManager from "./TestProcessManager.js"
