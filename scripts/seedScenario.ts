/**
 * The seed's scenario, end to end, on this machine: a host engine of our own
 * (in its own network namespace), a local registry (Debian's
 * `docker-registry` on 127.0.0.1 in that namespace), a small image pushed to
 * it, a Docker-enabled sandbox, `sandbox.docker.pull` of that image, `run`,
 * its output, then the sandbox removed. When the scope closes the host
 * engine and the registry stop too; the caller checks that nothing naming the
 * scenario's directory is left.
 *
 * Used by `npm run demo` (scripts/demo.ts) and by test/sandbox.real.test.ts.
 */
import { execFile } from "node:child_process"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { promisify } from "node:util"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Dockerd from "../src/Dockerd.js"
import * as Gvisor from "../src/Gvisor.js"
import { pidsMentioning } from "../src/internal/processTree.js"
import * as Probe from "../src/Probe.js"
import { ProcessManager } from "../src/ProcessManager.js"
import { waitUntilReady } from "../src/Readiness.js"
import * as ReadinessPolicy from "../src/ReadinessPolicy.js"
import * as Sandbox from "../src/Sandbox.js"

const run = promisify(execFile)

/** The images scripts/build-images.sh makes. */
export const BUSYBOX_IMAGE = "sandbox-docker/busybox:latest"
export const SANDBOX_IMAGE = "sandbox-docker/debian-docker:bookworm"
const BUILD_IMAGES = new URL("./build-images.sh", import.meta.url).pathname
const REGISTRY = "127.0.0.1:5000"

/** A phase and the milliseconds it took. */
export interface Phase {
  readonly name: string
  readonly ms: number
}

/** What the scenario saw. */
export interface ScenarioResult {
  readonly phases: ReadonlyArray<Phase>
  /** What the container in the sandbox printed. */
  readonly output: string
  /** The scenario's directory: nothing may mention it once the scope closed. */
  readonly dir: string
  /** Containers on the host engine right after the sandbox was removed. */
  readonly containersAfterRemove: ReadonlyArray<string>
  /** Processes naming the sandbox right after it was removed. */
  readonly shimsAfterRemove: ReadonlyArray<number>
}

/** A named network namespace with loopback up, deleted when the scope closes. */
export const networkNamespace = (name: string): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      await run("ip", ["netns", "add", name])
      await run("ip", ["netns", "exec", name, "ip", "link", "set", "lo", "up"])
      return name
    }),
    () => Effect.promise(() => run("ip", ["netns", "delete", name]).catch(() => undefined))
  )

/**
 * The host engine's daemon.json: gVisor's runsc registered as a runtime, as
 * `Gvisor.DAEMON_JSON` recommends (`--host-uds=create`: Docker inside
 * reached over a host socket).
 */
const HOST_DAEMON_JSON = {
  runtimes: { runsc: { path: "runsc", runtimeArgs: [...Gvisor.RUNTIME_ARGS] } }
}

/** A phase runner: runs an effect, records and prints how long it took. */
/** One clock for every phase this process prints, host and sandbox alike. */
const started = Date.now()

const phases = (log: (line: string) => void) => {
  const done: Array<Phase> = []
  const phase = <A, E, R>(name: string, effect: Effect.Effect<A, E, R>) =>
    Effect.gen(function* () {
      const t0 = Date.now()
      const result = yield* effect
      const ms = Date.now() - t0
      done.push({ name, ms })
      log(`[${String(Date.now() - started).padStart(6)}ms] ${name} (${ms}ms)`)
      return result
    })
  return { done, phase }
}

/**
 * The host side of the scenario: the scenario's directory and network
 * namespace, a host engine in it (runsc registered), the images, a local
 * registry on 127.0.0.1:5000 in the same namespace, and a small image pushed
 * to it.
 */
export interface HostEnvironment {
  readonly dir: string
  readonly netns: string
  readonly socket: string
  /** `DOCKER_HOST` for the docker CLI on the host engine. */
  readonly env: NodeJS.ProcessEnv
  /** The image pushed to the local registry. */
  readonly image: string
}

/**
 * Sets up the {@link HostEnvironment}; everything stops when the scope
 * closes.
 */
export const hostEnvironment = (log: (line: string) => void = () => {}) =>
  Effect.gen(function* () {
    const { phase } = phases(log)
    const dir = yield* Effect.acquireRelease(
      Effect.promise(() => mkdtemp("/tmp/sds-")),
      (path) => Effect.promise(() => rm(path, { recursive: true, force: true }))
    )
    const netns = yield* networkNamespace(`sds-${dir.slice(-6)}`)
    yield* Effect.promise(() => writeFile(`${dir}/daemon.json`, JSON.stringify(HOST_DAEMON_JSON)))
    const enter = ["nsenter", `--net=/run/netns/${netns}`, "--"] as const

    const host = yield* phase(
      "host engine ready",
      Dockerd.start(
        {
          socket: `${dir}/host.sock`,
          dataRoot: `${dir}/host-data`,
          execRoot: `${dir}/host-exec`,
          pidfile: `${dir}/host.pid`,
          network: { netns },
          extraArgs: ["--bridge=none", "--ip6tables=false", `--config-file=${dir}/daemon.json`]
        },
        ReadinessPolicy.fast
      )
    )
    const env = { ...process.env, DOCKER_HOST: `unix://${host.socket}` }
    yield* phase(
      "images ready (busybox, debian-docker)",
      Effect.promise(() => run("bash", [BUILD_IMAGES, "all"], { env, maxBuffer: 1 << 24 }))
    )

    yield* Effect.promise(() =>
      writeFile(
        `${dir}/registry.yml`,
        [
          "version: 0.1",
          "log:",
          "  level: warn",
          "storage:",
          "  filesystem:",
          `    rootdirectory: ${dir}/registry`,
          "http:",
          `  addr: ${REGISTRY}`,
          ""
        ].join("\n")
      )
    )
    const manager = yield* ProcessManager
    const registry = yield* manager.exec(
      [...enter, "docker-registry", "serve", `${dir}/registry.yml`],
      { killGrace: "2 seconds" }
    )
    const registryUp = yield* Probe.command(
      [...enter, "curl", "--silent", "--fail", `http://${REGISTRY}/v2/`],
      { name: "registry" }
    )
    yield* phase(
      "local registry ready",
      waitUntilReady(registry, registryUp, ReadinessPolicy.fast.withDeadline("20 seconds"))
    )
    const image = `${REGISTRY}/demo/busybox:1`
    yield* phase(
      `pushed ${image}`,
      Effect.promise(async () => {
        await run("docker", ["tag", BUSYBOX_IMAGE, image], { env })
        await run("docker", ["push", image], { env })
      })
    )
    return { dir, netns, socket: host.socket, env, image } satisfies HostEnvironment
  })

/**
 * Runs the scenario. `log` receives a line per phase. `runtime` chooses the
 * sandbox's runtime.
 */
export const seedScenario = (options: {
  readonly log: (line: string) => void
  readonly runtime?: "runc" | "runsc"
}) =>
  Effect.gen(function* () {
    const host = yield* hostEnvironment(options.log)
    const { done, phase } = phases(options.log)
    const image = host.image
    const dockerHost = host.env

    const sandbox = yield* phase(
      `sandbox created (${options.runtime ?? "runc"}, Docker enabled)`,
      Sandbox.create(
        {
          image: SANDBOX_IMAGE,
          dockerEnabled: true,
          runtime: options.runtime ?? "runc",
          cpu: 1,
          // The engine's own namespace, where the registry listens on
          // 127.0.0.1 (as the seed's platform ran it); it has no docker0.
          network: "host"
        },
        { engineSocket: host.socket, stopGrace: "5 seconds" }
      )
    )
    yield* phase("Docker ready inside the sandbox", sandbox.daemon)
    yield* phase(
      `sandbox.docker.pull("${image}")`,
      Effect.scoped(Effect.flatMap(sandbox.docker.pull(image), (pull) => pull.wait))
    )
    const output = yield* phase(
      "sandbox.docker.run (busybox echo)",
      Effect.scoped(
        Effect.flatMap(
          sandbox.docker.run(
            image,
            ["/bin/busybox", "echo", "hello from a container in a sandbox"],
            {
              remove: true
            }
          ),
          (container) => container.output
        )
      )
    )
    options.log(`output: ${output.stdout.trim()}`)
    yield* phase("sandbox removed", sandbox.remove)
    const containers = yield* Effect.promise(() =>
      run("docker", ["ps", "--all", "--quiet"], { env: dockerHost })
    )
    const shims = yield* pidsMentioning(sandbox.id)
    return {
      phases: done,
      output: output.stdout,
      dir: host.dir,
      containersAfterRemove: containers.stdout.split("\n").filter((line) => line.length > 0),
      shimsAfterRemove: shims
    } satisfies ScenarioResult
  }).pipe(Effect.withSpan("seedScenario"))

/** How long the whole scenario may take on a fresh machine (first image build included). */
export const SCENARIO_TIMEOUT = Duration.minutes(10)
