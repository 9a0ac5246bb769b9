package streams

import (
	"bytes"
	"encoding/binary"
	"math"
	"slices"
)

// wid names a window of a task: its group key and start. Sliding windows
// are computed from buckets, one per key and record time, named the same
// way (start = the time).
type wid struct {
	key   string
	start int64
}

// win is a window's state: its end, its aggregates, and whether it was
// emitted already (kept that way until its retention ends).
type win struct {
	end    int64
	closed bool
	aggs   []aggState
}

func (w *win) clone() *win {
	c := &win{end: w.end, closed: w.closed, aggs: make([]aggState, len(w.aggs))}
	for i := range w.aggs {
		c.aggs[i] = w.aggs[i].clone()
	}
	return c
}

// meta is a task's progress: its stream time and, for sliding windows,
// the end up to which windows were emitted.
type meta struct {
	streamTime int64
	closedTo   int64
}

const noTime = math.MinInt64 / 4

// result is one output record; a nil value is a tombstone.
type result struct {
	key, value []byte
}

// write is one changelog record; a nil value deletes the key.
type write struct {
	key, value []byte
}

// task computes the windows of one input partition. Changes since the
// last commit can be undone (an aborted transaction), and are listed as
// changelog writes at the next commit.
type task struct {
	cfg  *Config
	part int32
	meta meta
	wins map[string]map[int64]*win // group key → start → window

	// nextClose is a stream time below which no window of a fixed or
	// session kind closes or ends its retention (noTime: unknown, look).
	nextClose int64

	undo     map[wid]*win // pre-images of the windows changed since the last commit (nil: absent)
	undoMeta meta
	out      []result
	smp      sample

	in, late, invalid, emitted int64 // since the last commit
}

func newTask(cfg *Config, part int32) *task {
	t := &task{cfg: cfg, part: part, wins: make(map[string]map[int64]*win), undo: make(map[wid]*win)}
	t.meta = meta{streamTime: noTime, closedTo: noTime}
	t.undoMeta = t.meta
	t.nextClose = noTime
	return t
}

// closeAt is the stream time at which w closes.
func (t *task) closeAt(w *win) int64 {
	if t.cfg.Window.kind == session {
		return w.end + t.cfg.Window.size + t.cfg.Grace.Milliseconds() + 1
	}
	return w.end + t.cfg.Grace.Milliseconds()
}

// mayClose notes that w closes at its close time at the latest.
func (t *task) mayClose(w *win) {
	if at := t.closeAt(w); at < t.nextClose {
		t.nextClose = at
	}
}

// get returns the window, noting its pre-image for an undo; create makes
// it when absent.
func (t *task) get(key string, start int64, create bool, end int64) *win {
	byStart := t.wins[key]
	w := byStart[start]
	id := wid{key, start}
	if _, noted := t.undo[id]; !noted {
		if w != nil {
			t.undo[id] = w.clone()
		} else {
			t.undo[id] = nil
		}
	}
	if w == nil && create {
		if byStart == nil {
			byStart = make(map[int64]*win)
			t.wins[key] = byStart
		}
		w = &win{end: end, aggs: make([]aggState, len(t.cfg.Aggs))}
		byStart[start] = w
		t.mayClose(w)
	}
	return w
}

func (t *task) remove(key string, start int64) {
	t.get(key, start, false, 0)
	byStart := t.wins[key]
	delete(byStart, start)
	if len(byStart) == 0 {
		delete(t.wins, key)
	}
}

func (t *task) add(w *win) {
	for i, a := range t.cfg.Aggs {
		w.aggs[i].add(a.kind, t.smp.nums[i], t.smp.strs[i], t.smp.has[i])
	}
}

// process takes one input record.
func (t *task) process(e *Event) {
	t.in++
	key, ok := t.key(e)
	if !ok {
		t.invalid++
		return
	}
	ts, ok := t.cfg.Time(e)
	if !ok || ts < 0 {
		t.invalid++
		return
	}
	if ts > t.meta.streamTime {
		t.meta.streamTime = ts
	}
	t.smp.take(t.cfg.Aggs, e)
	grace, size := t.cfg.Grace.Milliseconds(), t.cfg.Window.size
	switch t.cfg.Window.kind {
	case tumbling, hopping:
		admitted := false
		t.cfg.Window.fixedStarts(ts, func(start int64) {
			end := start + size
			if end+grace <= t.meta.streamTime {
				return // closed
			}
			if w := t.wins[key][start]; w != nil && w.closed {
				return
			}
			admitted = true
			w := t.get(key, start, true, end)
			t.add(w)
			if t.cfg.Emit == EmitOnUpdate {
				t.emit(key, start, w.end, w.aggs)
			}
		})
		if !admitted {
			t.late++
		}
	case sliding:
		if ts+grace < t.meta.streamTime {
			t.late++
			return
		}
		t.add(t.get(key, ts, true, ts))
		if t.cfg.Emit == EmitOnUpdate {
			t.emitSlidingAround(key, ts)
		}
	case session:
		t.session(key, ts, grace, size)
	}
}

// key is the record's group key: after a repartition, its record key.
func (t *task) key(e *Event) (string, bool) {
	if t.cfg.repartition {
		return string(e.Record.Key), e.Record.Key != nil
	}
	return t.cfg.Key(e)
}

// session merges the record at ts into the sessions of key it reaches.
func (t *task) session(key string, ts, grace, gap int64) {
	start, end := ts, ts
	var merged []int64
	for s, w := range t.wins[key] {
		if !w.closed && w.end+gap+grace >= t.meta.streamTime && s-gap <= ts && ts <= w.end+gap {
			merged = append(merged, s)
			start, end = min(start, s), max(end, w.end)
		}
	}
	if end+gap+grace < t.meta.streamTime {
		t.late++
		return
	}
	slices.Sort(merged)
	aggs := make([]aggState, len(t.cfg.Aggs))
	for _, s := range merged {
		w := t.wins[key][s]
		for i, a := range t.cfg.Aggs {
			aggs[i].merge(a.kind, &w.aggs[i])
		}
		t.remove(key, s)
		if t.cfg.Emit == EmitOnUpdate && s != start {
			t.out = append(t.out, result{key: resultKey(key, s, w.end)}) // merged away
		}
	}
	w := t.get(key, start, true, end)
	w.end, w.aggs = end, aggs
	t.mayClose(w)
	t.add(w)
	if t.cfg.Emit == EmitOnUpdate {
		t.emit(key, start, end, w.aggs)
	}
}

func (t *task) emit(key string, start, end int64, aggs []aggState) {
	t.out = append(t.out, result{key: resultKey(key, start, end), value: resultValue(t.cfg.Aggs, key, start, end, aggs)})
	t.emitted++
}

// bucketTimes returns the times of key's sliding buckets, in order.
func (t *task) bucketTimes(key string) []int64 {
	times := make([]int64, 0, len(t.wins[key]))
	for s := range t.wins[key] {
		times = append(times, s)
	}
	slices.Sort(times)
	return times
}

// slidingAggs merges key's buckets within [start, end].
func (t *task) slidingAggs(key string, times []int64, start, end int64) ([]aggState, bool) {
	aggs := make([]aggState, len(t.cfg.Aggs))
	i, _ := slices.BinarySearch(times, start)
	found := false
	for ; i < len(times) && times[i] <= end; i++ {
		b := t.wins[key][times[i]]
		for j, a := range t.cfg.Aggs {
			aggs[j].merge(a.kind, &b.aggs[j])
		}
		found = true
	}
	return aggs, found
}

// slidingWindows calls fn with key's sliding windows (deduplicated) whose
// end is in (from, to].
func (t *task) slidingWindows(key string, times []int64, from, to int64, fn func(start, end int64)) {
	size := t.cfg.Window.size
	seen := make(map[[2]int64]bool)
	visit := func(start, end int64) {
		if end <= from || end > to || seen[[2]int64{start, end}] {
			return
		}
		seen[[2]int64{start, end}] = true
		fn(start, end)
	}
	for i, ts := range times {
		visit(ts-size, ts)
		if i+1 < len(times) && times[i+1] <= ts+1+size {
			visit(ts+1, ts+1+size)
		}
	}
}

// emitSlidingAround emits every sliding window of key that the record at
// ts changed or created.
func (t *task) emitSlidingAround(key string, ts int64) {
	size := t.cfg.Window.size
	times := t.bucketTimes(key)
	var wins [][2]int64
	for i, b := range times {
		if b >= ts && b <= ts+size {
			wins = append(wins, [2]int64{b - size, b})
		}
		if b >= ts-size-1 && b <= ts && i+1 < len(times) && times[i+1] <= b+1+size {
			wins = append(wins, [2]int64{b + 1, b + 1 + size})
		}
	}
	slices.SortFunc(wins, func(a, b [2]int64) int {
		if a[1] != b[1] {
			return int(a[1] - b[1])
		}
		return int(a[0] - b[0])
	})
	wins = slices.Compact(wins)
	for _, w := range wins {
		if aggs, ok := t.slidingAggs(key, times, w[0], w[1]); ok {
			t.emit(key, w[0], w[1], aggs)
		}
	}
}

// closeDue emits the windows the stream time has closed and purges those
// past their retention.
func (t *task) closeDue() {
	st := t.meta.streamTime
	if st == noTime {
		return
	}
	grace, size, retention := t.cfg.Grace.Milliseconds(), t.cfg.Window.size, t.cfg.Retention.Milliseconds()
	keys := make([]string, 0, len(t.wins))
	for k := range t.wins {
		keys = append(keys, k)
	}
	slices.Sort(keys) // results in a stable order
	if t.cfg.Window.kind == sliding {
		to := st - grace - 1
		if to <= t.meta.closedTo {
			return
		}
		for _, k := range keys {
			times := t.bucketTimes(k)
			t.slidingWindows(k, times, t.meta.closedTo, to, func(start, end int64) {
				if aggs, ok := t.slidingAggs(k, times, start, end); ok {
					t.emit(k, start, end, aggs)
				}
			})
			// Buckets no open window holds any more, nor one within
			// its retention.
			for _, b := range times {
				if b < to-size-retention {
					t.remove(k, b)
				}
			}
		}
		t.meta.closedTo = to
		return
	}
	if t.nextClose != noTime && st < t.nextClose {
		return // nothing closes yet
	}
	next := int64(math.MaxInt64)
	for _, k := range keys {
		starts := make([]int64, 0, len(t.wins[k]))
		for s := range t.wins[k] {
			starts = append(starts, s)
		}
		slices.Sort(starts)
		for _, s := range starts {
			w := t.wins[k][s]
			closeAt := t.closeAt(w) // closed when the stream time reaches it
			switch {
			case w.closed:
				if st >= closeAt+retention {
					t.remove(k, s)
				} else {
					next = min(next, closeAt+retention)
				}
			case st >= closeAt:
				t.emit(k, s, w.end, w.aggs)
				if retention == 0 {
					t.remove(k, s)
				} else {
					t.get(k, s, false, 0).closed = true
					next = min(next, closeAt+retention)
				}
			default:
				next = min(next, closeAt)
			}
		}
	}
	t.nextClose = next
}

// changes lists the changelog writes for everything changed since the
// last commit.
func (t *task) changes() []write {
	var ws []write
	for id, before := range t.undo {
		w := t.wins[id.key][id.start]
		switch {
		case w != nil:
			ws = append(ws, write{windowKey(id.key, id.start), encodeWin(w)})
		case before != nil:
			ws = append(ws, write{windowKey(id.key, id.start), nil})
		} // made and closed since the last commit: nothing to write
	}
	if t.meta != t.undoMeta {
		ws = append(ws, write{metaKey, encodeMeta(t.meta)})
	}
	slices.SortFunc(ws, func(a, b write) int { return bytes.Compare(a.key, b.key) })
	return ws
}

// committed makes the changes since the last commit the new base.
func (t *task) committed() {
	clear(t.undo)
	t.undoMeta = t.meta
	t.out = t.out[:0]
	t.in, t.late, t.invalid, t.emitted = 0, 0, 0, 0
}

// rollback undoes the changes since the last commit.
func (t *task) rollback() {
	for id, w := range t.undo {
		if w == nil {
			if byStart := t.wins[id.key]; byStart != nil {
				delete(byStart, id.start)
				if len(byStart) == 0 {
					delete(t.wins, id.key)
				}
			}
			continue
		}
		byStart := t.wins[id.key]
		if byStart == nil {
			byStart = make(map[int64]*win)
			t.wins[id.key] = byStart
		}
		byStart[id.start] = w
	}
	clear(t.undo)
	t.meta = t.undoMeta
	t.nextClose = noTime
	t.out = t.out[:0]
	t.in, t.late, t.invalid, t.emitted = 0, 0, 0, 0
}

// apply sets one changelog record into the base state (a restore).
func (t *task) apply(key, value []byte) error {
	t.nextClose = noTime
	if bytes.Equal(key, metaKey) {
		if value == nil {
			t.meta = meta{streamTime: noTime, closedTo: noTime}
		} else {
			m, err := decodeMeta(value)
			if err != nil {
				return err
			}
			t.meta = m
		}
		t.undoMeta = t.meta
		return nil
	}
	gk, start, err := parseWindowKey(key)
	if err != nil {
		return err
	}
	if value == nil {
		if byStart := t.wins[gk]; byStart != nil {
			delete(byStart, start)
			if len(byStart) == 0 {
				delete(t.wins, gk)
			}
		}
		return nil
	}
	w, err := decodeWin(value, len(t.cfg.Aggs))
	if err != nil {
		return err
	}
	byStart := t.wins[gk]
	if byStart == nil {
		byStart = make(map[int64]*win)
		t.wins[gk] = byStart
	}
	byStart[start] = w
	return nil
}

// Changelog keys: 'm' for the task's meta; 'w', the group key's length
// (uvarint), the group key and the start (8 bytes, order-preserving) for a
// window.
var metaKey = []byte{'m'}

func windowKey(key string, start int64) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(key)+8)
	b = append(b, 'w')
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	return binary.BigEndian.AppendUint64(b, uint64(start)^(1<<63))
}

func parseWindowKey(b []byte) (string, int64, error) {
	if len(b) < 1 || b[0] != 'w' {
		return "", 0, errBadState
	}
	l, n := binary.Uvarint(b[1:])
	if n <= 0 || uint64(len(b)) != 1+uint64(n)+l+8 {
		return "", 0, errBadState
	}
	key := string(b[1+n : 1+n+int(l)])
	start := int64(binary.BigEndian.Uint64(b[1+n+int(l):]) ^ (1 << 63))
	return key, start, nil
}

func encodeWin(w *win) []byte {
	flags := byte(0)
	if w.closed {
		flags = 1
	}
	return encodeWindow([]byte{flags}, w.end, w.aggs)
}

func decodeWin(b []byte, naggs int) (*win, error) {
	if len(b) < 1 || b[0] > 1 {
		return nil, errBadState
	}
	end, aggs, err := decodeWindow(b[1:], naggs)
	if err != nil {
		return nil, err
	}
	return &win{end: end, closed: b[0] == 1, aggs: aggs}, nil
}

func encodeMeta(m meta) []byte {
	b := binary.AppendVarint(nil, m.streamTime)
	return binary.AppendVarint(b, m.closedTo)
}

func decodeMeta(b []byte) (meta, error) {
	st, n := binary.Varint(b)
	if n <= 0 {
		return meta{}, errBadState
	}
	ct, k := binary.Varint(b[n:])
	if k <= 0 || n+k != len(b) {
		return meta{}, errBadState
	}
	return meta{streamTime: st, closedTo: ct}, nil
}
