// A stall is time the process did not run: the host paused it (SIGSTOP, a
// suspended VM), it was swapped out, or something held its thread. What its
// ingests were to hand the recorder meanwhile may be missing, so a stall
// while recording must be counted, never passed over in silence. Measured on
// the real clock (this is about the process itself, not the service's time):
// a timer that fires later than it should by more than the threshold.

export interface StallWatch {
  stop(): void
}

/** Calls `onStall(ms)` after each stall longer than `thresholdMs`. */
export function watchStalls(
  onStall: (ms: number) => void,
  o: { thresholdMs: number; everyMs?: number },
): StallWatch {
  const every = o.everyMs ?? 250
  let last = performance.now()
  const timer = setInterval(() => {
    const now = performance.now()
    const late = now - last - every
    last = now
    if (late > o.thresholdMs) onStall(Math.round(late))
  }, every)
  timer.unref()
  return { stop: () => clearInterval(timer) }
}
