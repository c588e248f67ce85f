/**
 * Test helpers for users' own tests: scripted processes in virtual time.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as TestProcessManager from "./TestProcessManager.js"
