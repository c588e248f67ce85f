/**
 * A registry that asks for a login, for the tests of the login from a
 * sandbox's environment.
 */
import { execFile } from "node:child_process"
import { writeFile } from "node:fs/promises"
import { promisify } from "node:util"
import * as Effect from "effect/Effect"
import { ProcessManager } from "../../src/ProcessManager.js"
import * as Probe from "../../src/Probe.js"
import { waitUntilReady } from "../../src/Readiness.js"
import * as ReadinessPolicy from "../../src/ReadinessPolicy.js"
import { type HostEnvironment, SANDBOX_IMAGE } from "../../scripts/seedScenario.js"

const run = promisify(execFile)

/**
 * A second registry in the host environment's network namespace, on
 * 127.0.0.1:5001, answering only `user` with `password` (htpasswd, bcrypt
 * made by the sandbox image's Python). Stopped when the scope closes.
 */
export const authRegistry = (host: HostEnvironment, user: string, password: string) =>
  Effect.gen(function* () {
    const address = "127.0.0.1:5001"
    const hash = yield* Effect.promise(() =>
      run(
        "docker",
        [
          "run",
          "--rm",
          "--network",
          "none",
          SANDBOX_IMAGE,
          "python3",
          "-W",
          "ignore",
          "-c",
          "import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
          password
        ],
        { env: host.env }
      )
    )
    yield* Effect.promise(() =>
      writeFile(`${host.dir}/htpasswd`, `${user}:${hash.stdout.trim()}\n`)
    )
    yield* Effect.promise(() =>
      writeFile(
        `${host.dir}/registry-auth.yml`,
        [
          "version: 0.1",
          "log:",
          "  level: warn",
          "storage:",
          "  filesystem:",
          `    rootdirectory: ${host.dir}/registry-auth`,
          "http:",
          `  addr: ${address}`,
          "auth:",
          "  htpasswd:",
          "    realm: sandbox-docker-test",
          `    path: ${host.dir}/htpasswd`,
          ""
        ].join("\n")
      )
    )
    const enter = ["nsenter", `--net=/run/netns/${host.netns}`, "--"] as const
    const manager = yield* ProcessManager
    const registry = yield* manager.exec(
      [...enter, "docker-registry", "serve", `${host.dir}/registry-auth.yml`],
      { killGrace: "2 seconds" }
    )
    // 401 without credentials: it serves, and asks for them.
    const up = yield* Probe.command(
      [
        ...enter,
        "sh",
        "-c",
        `curl -s -o /dev/null -w '%{http_code}' http://${address}/v2/ | grep -q 401`
      ],
      { name: "auth registry" }
    )
    yield* waitUntilReady(registry, up, ReadinessPolicy.fast.withDeadline("20 seconds"))
    return address
  })
