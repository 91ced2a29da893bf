// Stop sequences on generated text as it streams. Text comes in pieces (one per token), so a stop sequence can
// span pieces: the end of the text that could still become one is held back until a later piece decides, and
// nothing that is emitted is ever cut afterwards. At the first stop sequence the text ends: the stop sequence
// and everything after it (the rest of the same token's text) are dropped.

export interface StopMatch {
  /** Text that is final now: it contains no stop sequence and cannot become the start of one. */
  text: string;
  /** A stop sequence completed: no more text follows. */
  stopped: boolean;
}

export class StopSequenceMatcher {
  private held = "";
  private stopped = false;

  constructor(private readonly stops: readonly string[]) {
    if (stops.some((stop) => stop === "")) throw new Error("a stop sequence must not be empty");
  }

  /** Adds the next piece of text. After a stop, further pieces give nothing. */
  push(piece: string): StopMatch {
    if (this.stopped) return { text: "", stopped: true };
    const text = this.held + piece;
    const cut = this.firstStop(text);
    if (cut >= 0) {
      this.stopped = true;
      this.held = "";
      return { text: text.slice(0, cut), stopped: true };
    }
    const keep = this.longestOpenEnd(text);
    this.held = text.slice(text.length - keep);
    return { text: text.slice(0, text.length - keep), stopped: false };
  }

  /** The text still held back, once no more comes: it held no stop sequence, so it is part of the text. */
  flush(): string {
    const held = this.held;
    this.held = "";
    return held;
  }

  /** Where the earliest stop sequence starts in `text`, -1 for none. */
  private firstStop(text: string): number {
    let first = -1;
    for (const stop of this.stops) {
      const at = text.indexOf(stop);
      if (at >= 0 && (first < 0 || at < first)) first = at;
    }
    return first;
  }

  /** Length of the longest end of `text` that is the beginning of a stop sequence (and shorter than it). */
  private longestOpenEnd(text: string): number {
    let longest = 0;
    for (const stop of this.stops) {
      for (let length = Math.min(stop.length - 1, text.length); length > longest; length--) {
        if (text.endsWith(stop.slice(0, length))) {
          longest = length;
          break;
        }
      }
    }
    return longest;
  }
}
