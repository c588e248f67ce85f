/**
 * Shared plumbing for every ProcessManager implementation: a live stream of
 * output chunks plus a bounded tail of the last lines.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as PubSub from "effect/PubSub"
import * as Stream from "effect/Stream"

/** Which pipe a chunk came from. */
export type OutputSource = "stdout" | "stderr"

/** One chunk of process output. */
export interface OutputChunk {
  readonly source: OutputSource
  readonly text: string
}

/** Longest line kept in the tail; longer lines are cut. */
const MAX_LINE_CHARS = 4096

/**
 * A ring of the last `capacity` complete lines, one partial line per source.
 * Memory stays bounded however much the process prints.
 */
export class LineTail {
  private readonly lines: Array<string> = []
  private readonly partial: Record<OutputSource, string> = { stdout: "", stderr: "" }

  constructor(readonly capacity: number) {}

  push(source: OutputSource, text: string): void {
    const parts = (this.partial[source] + text).split("\n")
    this.partial[source] = clip(parts.pop() ?? "")
    for (const line of parts) this.add(clip(line.replace(/\r$/, "")))
  }

  add(line: string): void {
    if (this.capacity <= 0) return
    this.lines.push(line)
    if (this.lines.length > this.capacity) this.lines.splice(0, this.lines.length - this.capacity)
  }

  snapshot(): ReadonlyArray<string> {
    const pending = [this.partial.stdout, this.partial.stderr].filter((p) => p.length > 0)
    return [...this.lines, ...pending].slice(-this.capacity)
  }
}

const clip = (line: string): string =>
  line.length > MAX_LINE_CHARS ? line.slice(0, MAX_LINE_CHARS) + "…" : line

/**
 * Output of one process: chunks go to live subscribers (a sliding buffer, so a
 * slow reader loses old chunks rather than growing memory) and to the tail.
 */
export interface OutputBuffer {
  readonly publish: (chunk: OutputChunk) => Effect.Effect<void>
  readonly end: Effect.Effect<void>
  /**
   * `publish` and `end` for Node's event listeners (the local manager's
   * pipes): the chunk is in the tail and offered to the readers before the
   * listener returns, so nothing a process printed before its exit is
   * reported after it.
   */
  readonly offer: (chunk: OutputChunk) => void
  readonly close: () => void
  readonly stream: Stream.Stream<OutputChunk>
  readonly tail: Effect.Effect<ReadonlyArray<string>>
}

interface Numbered {
  readonly seq: number
  readonly chunk: OutputChunk
}

/**
 * Creates an output buffer keeping `tailLines` lines. With `keepBytes > 0` it
 * also keeps the first `keepBytes` of output, so that a subscriber that comes
 * late still gets the output from its beginning (then live output).
 */
export const makeOutputBuffer = (tailLines: number, keepBytes = 0): Effect.Effect<OutputBuffer> =>
  Effect.sync((): OutputBuffer => {
    // Made for the first reader of `stream`: most processes (probe
    // commands) never get one, and a hub allocates its 1,024 slots at once.
    let hub: PubSub.PubSub<Numbered | null> | undefined
    const hubNow = Effect.suspend(() =>
      hub !== undefined
        ? Effect.succeed(hub)
        : Effect.map(PubSub.sliding<Numbered | null>(1024), (made) => (hub ??= made))
    )
    const tail = new LineTail(tailLines)
    const kept: Array<Numbered> = []
    let keptBytes = 0
    let seq = 0
    let ended = false
    const offer = (chunk: OutputChunk) => {
      tail.push(chunk.source, chunk.text)
      const numbered = { seq: seq++, chunk }
      if (keptBytes < keepBytes) {
        kept.push(numbered)
        keptBytes += chunk.text.length
      }
      hub?.unsafeOffer(numbered)
    }
    const close = () => {
      if (ended) return
      ended = true
      hub?.unsafeOffer(null)
    }
    return {
      publish: (chunk) => Effect.sync(() => offer(chunk)),
      end: Effect.sync(close),
      offer,
      close,
      stream: Stream.unwrapScoped(
        Effect.map(Effect.flatMap(hubNow, PubSub.subscribe), (queue) => {
          // Subscribed first, then the kept chunks: live chunks already among
          // them are skipped by their number.
          const replay = [...kept]
          const after = replay.at(-1)?.seq ?? -1
          const live = ended
            ? Stream.empty
            : Stream.fromQueue(queue).pipe(
                Stream.takeWhile((item): item is Numbered => item !== null),
                Stream.filter((item) => item.seq > after),
                Stream.map((item) => item.chunk)
              )
          return Stream.concat(Stream.fromIterable(replay.map((item) => item.chunk)), live)
        })
      ),
      tail: Effect.sync(() => tail.snapshot())
    }
  })

/**
 * Bytes of a process's stdout and stderr decoded as UTF-8 into `output`,
 * a character split across chunks included.
 */
export class Texts {
  private readonly decoders = {
    stdout: new TextDecoder("utf-8"),
    stderr: new TextDecoder("utf-8")
  }

  constructor(private readonly output: OutputBuffer) {}

  publish(source: OutputSource, bytes: Uint8Array): Effect.Effect<void> {
    return Effect.suspend(() => {
      const text = this.decoders[source].decode(bytes, { stream: true })
      return text.length === 0 ? Effect.void : this.output.publish({ source, text })
    })
  }

  /** Publishes what the decoders still hold (an incomplete last character). */
  readonly flush: Effect.Effect<void> = Effect.suspend(() =>
    Effect.forEach(
      ["stdout", "stderr"] as const,
      (source) => {
        const text = this.decoders[source].decode()
        return text.length === 0 ? Effect.void : this.output.publish({ source, text })
      },
      { discard: true }
    )
  )
}
