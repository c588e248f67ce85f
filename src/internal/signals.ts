/**
 * Signal names and the kernel's numbers for them, both ways.
 *
 * @internal
 */
import { constants } from "node:os"

const SIGNALS = constants.signals as Readonly<Partial<Record<string, number>>>

/** The kernel's number of a signal (`9` for `SIGKILL`). */
export const signalNumber = (name: string): number | undefined => SIGNALS[name]

/** The name of a signal number (`SIGKILL` for 9). */
export const signalName = (number: number): string | undefined =>
  Object.keys(SIGNALS).find((name) => SIGNALS[name] === number)
