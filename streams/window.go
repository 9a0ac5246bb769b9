package streams

import (
	"fmt"
	"time"
)

type windowKind uint8

const (
	tumbling windowKind = iota + 1
	hopping
	sliding
	session
)

// Window is the kind of window results are computed over. Times are epoch
// milliseconds of event time.
//
//   - Tumbling(size): windows [start, start+size) aligned to the epoch,
//     one per record.
//   - Hopping(size, advance): windows [start, start+size) starting every
//     advance, aligned to the epoch; a record falls in size/advance of
//     them.
//   - Sliding(size): windows [start, end] with end-start = size, as
//     Kafka Streams' sliding windows: for every record at t of a key, the
//     window ending at t, and the window starting at t+1 if a later
//     record of the key falls in it.
//   - Session(gap): a key's records closer than gap to one another form
//     one session [first, last]; a record that bridges two sessions merges
//     them.
//
// A window of size size closes (its result is final and emitted) once the
// stream time reaches its end plus the grace period: for [start, end)
// windows when stream time ≥ end + grace; for sliding windows when stream
// time > end + grace; for sessions when stream time > last + gap + grace.
type Window struct {
	kind    windowKind
	size    int64 // milliseconds; the gap of a session window
	advance int64
}

// Tumbling windows of the given size.
func Tumbling(size time.Duration) Window {
	return Window{kind: tumbling, size: size.Milliseconds(), advance: size.Milliseconds()}
}

// Hopping windows of the given size, one starting every advance.
func Hopping(size, advance time.Duration) Window {
	return Window{kind: hopping, size: size.Milliseconds(), advance: advance.Milliseconds()}
}

// Sliding windows of the given size.
func Sliding(size time.Duration) Window { return Window{kind: sliding, size: size.Milliseconds()} }

// Session windows that close after gap without a record of their key.
func Session(gap time.Duration) Window { return Window{kind: session, size: gap.Milliseconds()} }

func (w Window) String() string {
	d := func(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }
	switch w.kind {
	case tumbling:
		return fmt.Sprintf("tumbling:%v", d(w.size))
	case hopping:
		return fmt.Sprintf("hopping:%v,%v", d(w.size), d(w.advance))
	case sliding:
		return fmt.Sprintf("sliding:%v", d(w.size))
	case session:
		return fmt.Sprintf("session:%v", d(w.size))
	}
	return "none"
}

// fixedStarts calls fn with the start of every tumbling or hopping window
// that holds t, earliest first.
func (w Window) fixedStarts(t int64, fn func(start int64)) {
	last := t - mod(t, w.advance)
	first := last
	for first-w.advance > t-w.size {
		first -= w.advance
	}
	for s := first; s <= last; s += w.advance {
		fn(s)
	}
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}
