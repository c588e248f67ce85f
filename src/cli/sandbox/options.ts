/**
 * What the `sandbox` commands share on the command line: the host engine
 * (`--engine`), the sandbox (`NAME`), and the readiness policy for Docker
 * inside (`--deadline`, 60s unless given).
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { ReadinessPolicy } from "../../ReadinessPolicy.js"
import * as Shared from "../options.js"

/**
 * The host engine's socket when `--engine` is not given.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_ENGINE = "/var/run/docker.sock"

/**
 * `--engine SOCKET`, checked by {@link decodeEngine}.
 *
 * @since 0.1.0
 * @category options
 */
export const engine = Shared.text(
  "engine",
  "SOCKET",
  `the host Docker Engine's unix socket (default ${DEFAULT_ENGINE})`
)

/**
 * The engine socket: an absolute path ({@link DEFAULT_ENGINE} when not given).
 *
 * @since 0.1.0
 * @category options
 */
export const decodeEngine = (value: Option.Option<string>) => {
  const socket = Option.getOrElse(value, () => DEFAULT_ENGINE)
  return socket.startsWith("/") && !socket.includes("\0")
    ? Effect.succeed(socket)
    : Effect.fail(
        new Shared.InvalidArguments({
          option: "engine",
          problem: `${JSON.stringify(socket)} is not an absolute path to a unix socket`
        })
      )
}

/**
 * The `NAME` argument, checked by {@link decodeSandbox}.
 *
 * @since 0.1.0
 * @category options
 */
export const sandbox = Args.text({ name: "NAME" }).pipe(
  Args.withDescription("the sandbox's name or id")
)

/**
 * A sandbox name or id as given: never an option, never empty.
 *
 * @since 0.1.0
 * @category options
 */
export const decodeSandbox = (value: string) =>
  /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(value)
    ? Effect.succeed(value)
    : Effect.fail(
        new Shared.InvalidUsage({
          problem: `${JSON.stringify(value)} is not a sandbox name or id`
        })
      )

/**
 * The readiness policy for Docker inside a sandbox: the fast one, its
 * deadline `--deadline` or 60s.
 *
 * @since 0.1.0
 * @category options
 */
export const dockerReadiness = (
  deadline: Option.Option<string>
): Effect.Effect<ReadinessPolicy, Shared.InvalidArguments> =>
  Shared.readinessPolicy(
    Option.none(),
    Option.orElse(deadline, () => Option.some("60s"))
  )
