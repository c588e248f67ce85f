/**
 * Errors made on a hot path without capturing a stack trace.
 *
 * A probe's "not yet" or timeout is an outcome, made in a callback of a
 * socket or a timer many times a second across many daemons: its stack is
 * Node's event loop, of no use to anyone, and capturing it is most of the
 * cost of making the error (measured: ~8 µs with the stack, ~2.6 µs
 * without). The error keeps its type, fields and message.
 *
 * @internal
 */

/** Runs `make` with stack traces off, so the errors it makes capture none. */
export const stackless = <A>(make: () => A): A => {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return make()
  } finally {
    Error.stackTraceLimit = limit
  }
}
