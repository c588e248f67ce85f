/**
 * `npm run demo`: the seed's scenario end to end (see scripts/seedScenario.ts),
 * printing each phase with its time; `--pool` claims the sandbox from a
 * warm pool (scripts/poolScenario.ts). Needs root, docker.io, docker-registry,
 * debootstrap and busybox-static (bash .ci/run installs them).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Dockerd from "../src/Dockerd.js"
import { pidsMentioning } from "../src/internal/processTree.js"
import { poolScenario } from "./poolScenario.js"
import { seedScenario } from "./seedScenario.js"

const runtime = process.argv.includes("--runsc") ? "runsc" : "runc"

const program = Effect.gen(function* () {
  const started = Date.now()
  const log = (line: string) => console.log(line)
  const result = process.argv.includes("--pool")
    ? yield* Effect.scoped(poolScenario({ log }))
    : yield* Effect.scoped(seedScenario({ log, runtime }))
  const leftovers = yield* pidsMentioning(result.dir)
  console.log(`[${String(Date.now() - started).padStart(6)}ms] host engine and registry stopped`)
  console.log(
    leftovers.length === 0 && result.containersAfterRemove.length === 0
      ? "nothing left running"
      : `left behind: processes ${leftovers.join(", ") || "none"}, containers ${result.containersAfterRemove.join(", ") || "none"}`
  )
}).pipe(
  Effect.provide(Dockerd.layerNode),
  Logger.withMinimumLogLevel(
    process.env.SANDBOX_DOCKER_LOG === "debug" ? LogLevel.Debug : LogLevel.Warning
  )
)

NodeRuntime.runMain(program)
