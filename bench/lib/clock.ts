/**
 * One clock for the bench and its helper processes: epoch milliseconds with
 * microsecond resolution (`performance.timeOrigin + performance.now()`), so
 * a time taken in another process on this machine can be compared with one
 * taken here.
 */
export const now = (): number => performance.timeOrigin + performance.now()

/** Sleeps `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, ms))
