/**
 * Docker inside gVisor: sandboxes on a real host engine with runsc
 * registered (scripts/seedScenario.ts `hostEnvironment`), a real dockerd
 * inside, a real local registry. One Docker-enabled runsc sandbox is shared
 * by the tests that only use its Docker; tests that break Docker inside get
 * their own.
 */
import { execFileSync } from "node:child_process"
import { describe, expect, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Dockerd from "../src/Dockerd.js"
import * as DockerEngine from "../src/DockerEngine.js"
import { pidsMentioning } from "../src/internal/processTree.js"
import * as Sandbox from "../src/Sandbox.js"
import { type HostEnvironment, hostEnvironment, SANDBOX_IMAGE } from "../scripts/seedScenario.js"

const hasRunsc = (): boolean => {
  try {
    execFileSync("sh", ["-c", "command -v dockerd && command -v runsc"], { stdio: "ignore" })
    return true
  } catch {
    if (process.env.CI === "true") throw new Error("CI=true but dockerd or runsc is not installed")
    return false
  }
}

class Host extends Context.Tag("test/Host")<Host, HostEnvironment>() {}

const HostLive = Layer.scoped(Host, hostEnvironment()).pipe(Layer.provideMerge(Dockerd.layerNode))

/** A Docker-enabled sandbox on runsc, removed when the test's scope closes. */
const gvisorSandbox = Effect.flatMap(Host, (host) =>
  Effect.acquireRelease(
    Sandbox.create(
      { image: SANDBOX_IMAGE, runtime: "runsc", dockerEnabled: true, network: "host" },
      { engineSocket: host.socket, stopGrace: "5 seconds" }
    ),
    (sandbox) => sandbox.remove
  )
)

// The first run on a fresh machine builds the Debian image with debootstrap (~3 min).
const TIMEOUT = Duration.toMillis(Duration.minutes(10))

const ContainerInspect = Schema.Struct({
  HostConfig: Schema.Struct({ Runtime: Schema.String })
})

/** Runs a command in the sandbox and gives its output lines. */
const execLines = (sandbox: Sandbox.Sandbox, argv: readonly [string, ...Array<string>]) =>
  Effect.scoped(
    Effect.gen(function* () {
      const handle = yield* sandbox.exec(argv, { tailLines: 200 })
      yield* handle.awaitExit
      return yield* handle.logTail
    })
  )

describe.skipIf(!hasRunsc())("Docker inside gVisor (runsc)", () => {
  layer(HostLive, { timeout: TIMEOUT, excludeTestServices: true })((it) => {
    it.scoped(
      "create, ready, pull, run: on runsc (gVisor's kernel answers inside) Docker is ready on vfs, pulls from the local registry and runs a container",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* gvisorSandbox
          const engine = yield* DockerEngine.make(host.socket)
          const inspect = yield* engine.request("GET", `/containers/${sandbox.id}/json`, {
            schema: ContainerInspect
          })
          expect(inspect.HostConfig.Runtime).toBe("runsc")
          // gVisor's own kernel log, which runc's host kernel never prints.
          expect((yield* execLines(sandbox, ["dmesg"])).join("\n")).toContain("gVisor")
          const daemon = yield* sandbox.daemon
          expect(daemon.serverVersion).toMatch(/^\d+\.\d+/)
          expect(daemon.storageDriver).toBe("vfs")
          expect(daemon.config.profile).toBe("gvisor")
          yield* Effect.flatMap(sandbox.docker.pull(host.image), (pull) => pull.wait)
          const output = yield* Effect.flatMap(
            sandbox.docker.run(host.image, ["/bin/busybox", "echo", "hello from gVisor"], {
              remove: true
            }),
            (container) => container.output
          )
          expect(output.stdout.trim()).toBe("hello from gVisor")
        }),
      TIMEOUT
    )

    it.scoped(
      "remove: the sandbox's container and every process of it (runsc sandbox, gofer, shim, dockerd) are gone",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* gvisorSandbox
          yield* sandbox.daemon
          expect(yield* pidsMentioning(sandbox.id)).not.toEqual([])
          yield* sandbox.remove
          expect(yield* pidsMentioning(sandbox.id)).toEqual([])
          const engine = yield* DockerEngine.make(host.socket)
          const left = yield* engine.request("GET", "/containers/json?all=true", {
            schema: Schema.Array(Schema.Struct({ Id: Schema.String }))
          })
          expect(left.map((c) => c.Id)).not.toContain(sandbox.id)
        }),
      TIMEOUT
    )
  })
})
