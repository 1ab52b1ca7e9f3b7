package measure

import "time"

// A Budget spreads a run's time limit over its measurements: waits for
// quiet and retries of disturbed measurements take only the time the run
// can spare, projected from the measurements so far.
type Budget struct {
	limit       time.Duration
	start       time.Time
	total, done int           // measurements planned and finished
	tries       int           // runs timed, retries included
	spent       time.Duration // in those runs, without the waits
}

// NewBudget starts the clock of a run of total measurements.
func NewBudget(limit time.Duration, total int) *Budget {
	return &Budget{limit: limit, start: time.Now(), total: max(total, 1)}
}

// slack is how much time waits and retries may still take without the run
// going past its limit.
func (b *Budget) slack() time.Duration {
	if b.tries == 0 {
		return b.limit / time.Duration(4*b.total)
	}
	projected := time.Since(b.start) + b.spent/time.Duration(b.tries)*time.Duration(b.total-b.done)
	return max(b.limit-projected, 0)
}

// Quiet waits up to maxWait, or what the budget spares, for the machine to be
// quiet (see WaitQuiet).
func (b *Budget) Quiet(maxWait time.Duration, maxForeign float64) {
	if wait := min(maxWait, b.slack()); wait > 0 {
		WaitQuiet(wait, maxForeign)
	}
}

// Time runs one try of a measurement and counts its time.
func (b *Budget) Time(run func()) {
	t := time.Now()
	run()
	b.spent += time.Since(t)
	b.tries++
}

// Spare reports whether the budget spares another try.
func (b *Budget) Spare() bool {
	return b.tries == 0 || b.slack() >= b.spent/time.Duration(b.tries)
}

// Done counts a measurement finished, with its retries.
func (b *Budget) Done() { b.done++ }
