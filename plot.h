// plot.h: `seal runs plot`: a run directory as one self-contained SVG, written
// by the program itself (no plotting dependency).
#pragma once

// Reads RUN as `seal runs show` does (no lock: a run at work can be drawn) and
// writes the picture atomically to out (NULL: RUN/plot.svg). Its panels, each a
// number per round read from edits.jsonl (final attempts only, but seconds of
// every attempt):
//   held-out success (eval), with the no-adaptation baseline and the oracle;
//   the share of the E-step's self-edits accepted (train);
//   the directives of the valid held-out self-edits (ARC self-edits only);
//   the retention probe, with the base policy's and the rounds held back
//   (events.jsonl "hold");
//   mean seconds per self-edit of every phase: sampling, training, inference.
// Values are printed as "%.2f" (scores, seconds) and "A/N" (accepted), and each
// mark carries a <title> with its exact numbers.
int plot_run(const char *dir, const char *out, char *err);
