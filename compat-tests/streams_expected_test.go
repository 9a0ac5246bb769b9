package compattests

// The results `pubg1 stream` must write, computed here from its input by a
// reference that shares no code with the processor: windowed aggregates per
// group key, on event time, with a grace period, as the stream tests
// specify them. The reference keeps every window's records and aggregates
// them at the end, rather than updating running state.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// streamRecord is one input record as produced: its partition, key, JSON
// value and timestamp (epoch milliseconds).
type streamRecord struct {
	Partition int32
	Key       []byte
	Value     []byte
	Timestamp int64
}

// windowSpec is a kind of window; times are milliseconds.
type windowSpec struct {
	kind    string // tumbling, hopping, sliding or session
	size    int64  // the window's length; a session's gap
	advance int64  // between hopping window starts (tumbling: size)
}

func tumblingWindow(size time.Duration) windowSpec {
	return windowSpec{kind: "tumbling", size: size.Milliseconds(), advance: size.Milliseconds()}
}

func hoppingWindow(size, advance time.Duration) windowSpec {
	return windowSpec{kind: "hopping", size: size.Milliseconds(), advance: advance.Milliseconds()}
}

func slidingWindow(size time.Duration) windowSpec {
	return windowSpec{kind: "sliding", size: size.Milliseconds()}
}

func sessionWindow(gap time.Duration) windowSpec {
	return windowSpec{kind: "session", size: gap.Milliseconds()}
}

// flag is the window as --window takes it.
func (w windowSpec) flag() string {
	d := func(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() }
	if w.kind == "hopping" {
		return fmt.Sprintf("hopping:%s,%s", d(w.size), d(w.advance))
	}
	return w.kind + ":" + d(w.size)
}

// streamQuery is what one processor computes: the flags --window, --agg,
// --grace, --key and --time.
type streamQuery struct {
	window windowSpec
	grace  int64    // milliseconds
	aggs   []string // as --agg takes them: count, sum:FIELD, ...
	key    string   // "key" or "field:NAME"
	time   string   // "timestamp" or "field:NAME"
}

// flags are the query's command-line flags.
func (q streamQuery) flags() []string {
	args := []string{"--window", q.window.flag()}
	for _, a := range q.aggs {
		args = append(args, "--agg", a)
	}
	return append(args,
		"--grace", (time.Duration(q.grace) * time.Millisecond).String(),
		"--key", q.key,
		"--time", q.time)
}

// aggNames are the names of the query's aggregates in the results.
func (q streamQuery) aggNames() []string {
	names := make([]string, len(q.aggs))
	for i, a := range q.aggs {
		names[i] = aggName(a)
	}
	return names
}

// aggName is an aggregate's name in the results: count, sum_F, min_F,
// max_F, avg_F, count_distinct_F.
func aggName(spec string) string {
	kind, field, _ := strings.Cut(spec, ":")
	if kind == "count" {
		return "count"
	}
	return strings.ReplaceAll(kind, "-", "_") + "_" + field
}

// windowID names a window of a group key: the key of its result record.
type windowID struct {
	key        string
	start, end int64
}

func (id windowID) String() string {
	return fmt.Sprintf("%q [%d, %d]", id.key, id.start, id.end)
}

func compareIDs(a, b windowID) int {
	if c := strings.Compare(a.key, b.key); c != 0 {
		return c
	}
	if a.start != b.start {
		return cmpInt(a.start, b.start)
	}
	return cmpInt(a.end, b.end)
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// refEvent is an input record as the reference sees it: its group key,
// event time and JSON fields.
type refEvent struct {
	key    string
	t      int64
	fields map[string]json.RawMessage
}

// eventOf extracts a record's group key and event time as q says; false
// when the record has none.
func eventOf(r streamRecord, q streamQuery) (*refEvent, bool) {
	e := &refEvent{}
	// A value that is not a JSON object has no fields.
	if json.Unmarshal(r.Value, &e.fields) != nil {
		e.fields = nil
	}
	switch {
	case q.key == "key":
		if r.Key == nil {
			return nil, false
		}
		e.key = string(r.Key)
	case strings.HasPrefix(q.key, "field:"):
		s, ok := e.text(strings.TrimPrefix(q.key, "field:"))
		if !ok {
			return nil, false
		}
		e.key = s
	default:
		return nil, false
	}
	switch {
	case q.time == "timestamp":
		e.t = r.Timestamp
	case strings.HasPrefix(q.time, "field:"):
		n, ok := e.number(strings.TrimPrefix(q.time, "field:"))
		if !ok || n < 0 || n > 1<<53 {
			return nil, false
		}
		e.t = int64(n)
	default:
		return nil, false
	}
	return e, true
}

// number is a field that is a JSON number.
func (e *refEvent) number(field string) (float64, bool) {
	var v any
	if raw, ok := e.fields[field]; !ok || json.Unmarshal(raw, &v) != nil {
		return 0, false
	}
	n, ok := v.(float64)
	return n, ok
}

// text is a field as a string: a JSON string's contents, a number or
// boolean as written.
func (e *refEvent) text(field string) (string, bool) {
	raw, ok := e.fields[field]
	var v any
	if !ok || json.Unmarshal(raw, &v) != nil {
		return "", false
	}
	switch v := v.(type) {
	case string:
		return v, true
	case float64, bool:
		return string(bytes.TrimSpace(raw)), true
	}
	return "", false
}

// expectedWindow is a window the processor creates: its records, and
// whether its partition's final stream time closed it (only closed windows
// are emitted with --emit close).
type expectedWindow struct {
	id     windowID
	closed bool
	events []*refEvent
}

// expectation is what the reference computed from an input.
type expectation struct {
	windows map[windowID]*expectedWindow
	late    int // records dropped because they would only join closed windows
	invalid int // records without a group key or event time
	open    int // windows that the input's end leaves open
}

// results are the final aggregates of the windows, by window; with
// onlyClosed, of the closed ones (--emit close).
func (x *expectation) results(q streamQuery, onlyClosed bool) map[windowID]map[string]*float64 {
	out := make(map[windowID]map[string]*float64, len(x.windows))
	for id, w := range x.windows {
		if onlyClosed && !w.closed {
			continue
		}
		vals := make(map[string]*float64, len(q.aggs))
		for _, a := range q.aggs {
			vals[aggName(a)] = aggregateOf(w.events, a)
		}
		out[id] = vals
	}
	return out
}

// aggregateOf computes one aggregate over a window's records; nil is
// JSON null (min, max and avg of a window where no record had the field as
// a number).
func aggregateOf(events []*refEvent, spec string) *float64 {
	kind, field, _ := strings.Cut(spec, ":")
	val := func(v float64) *float64 { return &v }
	if kind == "count" {
		return val(float64(len(events)))
	}
	if kind == "count-distinct" {
		distinct := make(map[string]bool)
		for _, e := range events {
			if s, ok := e.text(field); ok {
				distinct[s] = true
			}
		}
		return val(float64(len(distinct)))
	}
	var nums []float64
	for _, e := range events {
		if n, ok := e.number(field); ok {
			nums = append(nums, n)
		}
	}
	sum := 0.0
	for _, n := range nums {
		sum += n
	}
	switch kind {
	case "sum":
		return val(sum)
	case "min", "max", "avg":
		if len(nums) == 0 {
			return nil
		}
	}
	switch kind {
	case "min":
		return val(slices.Min(nums))
	case "max":
		return val(slices.Max(nums))
	case "avg":
		return val(sum / float64(len(nums)))
	}
	panic("unknown aggregate " + spec)
}

// expectedWindows computes the windows a processor running q creates from
// the input records: each partition on its own, in the order of recs (the
// offset order), with its own stream time.
func expectedWindows(recs []streamRecord, q streamQuery) (*expectation, error) {
	x := &expectation{windows: make(map[windowID]*expectedWindow)}
	byPart := make(map[int32][]*refEvent)
	keyPart := make(map[string]int32)
	for _, r := range recs {
		e, ok := eventOf(r, q)
		if !ok {
			x.invalid++
			continue
		}
		if p, seen := keyPart[e.key]; seen && p != r.Partition {
			return nil, fmt.Errorf("group key %q is in partitions %d and %d", e.key, p, r.Partition)
		}
		keyPart[e.key] = r.Partition
		byPart[r.Partition] = append(byPart[r.Partition], e)
	}
	for _, p := range slices.Sorted(maps.Keys(byPart)) {
		var wins []*expectedWindow
		var late int
		switch q.window.kind {
		case "tumbling", "hopping":
			wins, late = fixedWindowsOf(byPart[p], q.window, q.grace)
		case "sliding":
			wins, late = slidingWindowsOf(byPart[p], q.window, q.grace)
		case "session":
			wins, late = sessionWindowsOf(byPart[p], q.window, q.grace)
		default:
			return nil, fmt.Errorf("unknown window kind %q", q.window.kind)
		}
		x.late += late
		for _, w := range wins {
			if _, dup := x.windows[w.id]; dup {
				return nil, fmt.Errorf("window %v computed twice", w.id)
			}
			x.windows[w.id] = w
			if !w.closed {
				x.open++
			}
		}
	}
	return x, nil
}

// floorTo is the greatest multiple of m at or below t.
func floorTo(t, m int64) int64 {
	r := t % m
	if r < 0 {
		r += m
	}
	return t - r
}

// fixedWindowsOf computes the tumbling or hopping windows of one
// partition's records: windows [start, start+size) with start a multiple
// of the advance. A record joins every window that holds it and is not
// closed (stream time ≥ start+size+grace, the stream time counting the
// record itself); it is late if all of them are closed.
func fixedWindowsOf(events []*refEvent, w windowSpec, grace int64) ([]*expectedWindow, int) {
	byID := make(map[windowID]*expectedWindow)
	var order []*expectedWindow
	stream := int64(math.MinInt64)
	late := 0
	for _, e := range events {
		stream = max(stream, e.t)
		joined := false
		for start := floorTo(e.t, w.advance); start > e.t-w.size; start -= w.advance {
			if stream >= start+w.size+grace {
				continue
			}
			id := windowID{e.key, start, start + w.size}
			win := byID[id]
			if win == nil {
				win = &expectedWindow{id: id}
				byID[id] = win
				order = append(order, win)
			}
			win.events = append(win.events, e)
			joined = true
		}
		if !joined {
			late++
		}
	}
	for _, win := range order {
		win.closed = stream >= win.id.end+grace
	}
	return order, late
}

// slidingWindowsOf computes the sliding windows of one partition's
// records: a record is late if its time plus the grace is behind the
// stream time. Each admitted record at t makes the window [t-size, t], and
// the window [t+1, t+1+size] if an admitted record of its key is in it;
// a window holds every admitted record of its key within its bounds
// (inclusive) and closes once the stream time passes end+grace.
func slidingWindowsOf(events []*refEvent, w windowSpec, grace int64) ([]*expectedWindow, int) {
	stream := int64(math.MinInt64)
	late := 0
	byKey := make(map[string][]*refEvent)
	for _, e := range events {
		stream = max(stream, e.t)
		if e.t+grace < stream {
			late++
			continue
		}
		byKey[e.key] = append(byKey[e.key], e)
	}
	var out []*expectedWindow
	for _, key := range slices.Sorted(maps.Keys(byKey)) {
		admitted := byKey[key]
		ids := make(map[windowID]bool)
		for _, e := range admitted {
			ids[windowID{key, e.t - w.size, e.t}] = true
			for _, o := range admitted {
				if o.t > e.t && o.t <= e.t+1+w.size {
					ids[windowID{key, e.t + 1, e.t + 1 + w.size}] = true
					break
				}
			}
		}
		for _, id := range slices.SortedFunc(maps.Keys(ids), compareIDs) {
			win := &expectedWindow{id: id, closed: stream > id.end+grace}
			for _, e := range admitted {
				if e.t >= id.start && e.t <= id.end {
					win.events = append(win.events, e)
				}
			}
			out = append(out, win)
		}
	}
	return out, late
}

// sessionWindowsOf computes the session windows of one partition's
// records. A record merges with every open session of its key it is within
// gap of (a session [s, e] is open while the stream time is at most
// e+gap+grace); it is late if the session it would form or join is closed
// already. A session's window is [first, last].
func sessionWindowsOf(events []*refEvent, w windowSpec, grace int64) ([]*expectedWindow, int) {
	type session struct {
		start, end int64
		events     []*refEvent
	}
	gap := w.size
	stream := int64(math.MinInt64)
	late := 0
	byKey := make(map[string][]*session)
	for _, e := range events {
		stream = max(stream, e.t)
		merged := &session{start: e.t, end: e.t}
		var keep []*session
		for _, s := range byKey[e.key] {
			open := s.end+gap+grace >= stream
			if open && s.start-gap <= e.t && e.t <= s.end+gap {
				merged.start, merged.end = min(merged.start, s.start), max(merged.end, s.end)
				merged.events = append(merged.events, s.events...)
				continue
			}
			keep = append(keep, s)
		}
		if merged.end+gap+grace < stream {
			late++
			continue
		}
		merged.events = append(merged.events, e)
		byKey[e.key] = append(keep, merged)
	}
	var out []*expectedWindow
	for _, key := range slices.Sorted(maps.Keys(byKey)) {
		for _, s := range byKey[key] {
			out = append(out, &expectedWindow{
				id:     windowID{key, s.start, s.end},
				closed: stream > s.end+gap+grace,
				events: s.events,
			})
		}
	}
	return out, late
}

// outputRecord is one result record as read from the output topic.
type outputRecord struct {
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
}

// parseResult checks a result record's form, key {"key":K,"start":S,
// "end":E} and value {"start":S,"end":E,"key":K, one field per aggregate},
// and returns its window and aggregates (nil for null).
func parseResult(r outputRecord, names []string) (windowID, map[string]*float64, error) {
	var id windowID
	var k map[string]json.RawMessage
	if err := json.Unmarshal(r.Key, &k); err != nil {
		return id, nil, fmt.Errorf("key %q is not a JSON object: %v", r.Key, err)
	}
	if len(k) != 3 {
		return id, nil, fmt.Errorf("key %s: want exactly key, start and end", r.Key)
	}
	if err := windowFields(k, &id); err != nil {
		return id, nil, fmt.Errorf("key %s: %v", r.Key, err)
	}
	var v map[string]json.RawMessage
	if err := json.Unmarshal(r.Value, &v); err != nil {
		return id, nil, fmt.Errorf("value %q is not a JSON object: %v", r.Value, err)
	}
	var vid windowID
	if err := windowFields(v, &vid); err != nil {
		return id, nil, fmt.Errorf("value %s: %v", r.Value, err)
	}
	if vid != id {
		return id, nil, fmt.Errorf("value %s names another window than key %s", r.Value, r.Key)
	}
	vals := make(map[string]*float64, len(names))
	for _, name := range names {
		raw, ok := v[name]
		if !ok {
			return id, nil, fmt.Errorf("value %s lacks %q", r.Value, name)
		}
		if string(bytes.TrimSpace(raw)) == "null" {
			vals[name] = nil
			continue
		}
		var n float64
		if err := json.Unmarshal(raw, &n); err != nil {
			return id, nil, fmt.Errorf("value %s: %q is not a number or null", r.Value, name)
		}
		vals[name] = &n
	}
	for f := range v {
		if f != "key" && f != "start" && f != "end" && !slices.Contains(names, f) {
			return id, nil, fmt.Errorf("value %s has field %q, which is no aggregate asked for", r.Value, f)
		}
	}
	return id, vals, nil
}

// windowFields reads the fields key (a string), start and end (integers).
func windowFields(m map[string]json.RawMessage, id *windowID) error {
	if err := json.Unmarshal(m["key"], &id.key); err != nil || m["key"] == nil {
		return fmt.Errorf("key is not a string")
	}
	if err := json.Unmarshal(m["start"], &id.start); err != nil || m["start"] == nil {
		return fmt.Errorf("start is not an integer")
	}
	if err := json.Unmarshal(m["end"], &id.end); err != nil || m["end"] == nil {
		return fmt.Errorf("end is not an integer")
	}
	return nil
}

// sameAggregate compares aggregate values: both null, or numbers equal up
// to rounding (sums of the same numbers in another order differ in the
// last bits).
func sameAggregate(got, want *float64) bool {
	if got == nil || want == nil {
		return got == nil && want == nil
	}
	g, w := *got, *want
	return math.Abs(g-w) <= 1e-9*max(1, math.Abs(g), math.Abs(w))
}

func formatAggregates(names []string, vals map[string]*float64) string {
	parts := make([]string, len(names))
	for i, n := range names {
		s := "null"
		if v := vals[n]; v != nil {
			s = strconv.FormatFloat(*v, 'g', -1, 64)
		}
		parts[i] = n + "=" + s
	}
	return strings.Join(parts, " ")
}

// diffResults compares the result records read from the output topic with
// the expected final aggregates per window and returns the differences,
// sorted. With lastOnly (--emit update) a window may have many results and
// its last one, in offset order, counts; all of them must then be in one
// partition. Otherwise each window must have exactly one result.
func diffResults(want map[windowID]map[string]*float64, got []outputRecord, names []string, lastOnly bool) []string {
	var problems []string
	type seen struct {
		n     int
		parts map[int32]bool
		last  outputRecord
		vals  map[string]*float64
	}
	byID := make(map[windowID]*seen)
	sorted := slices.Clone(got)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].Partition != sorted[j].Partition {
			return sorted[i].Partition < sorted[j].Partition
		}
		return sorted[i].Offset < sorted[j].Offset
	})
	for _, r := range sorted {
		id, vals, err := parseResult(r, names)
		if err != nil {
			problems = append(problems, fmt.Sprintf("partition %d offset %d: %v", r.Partition, r.Offset, err))
			continue
		}
		s := byID[id]
		if s == nil {
			s = &seen{parts: make(map[int32]bool)}
			byID[id] = s
		}
		s.n++
		s.parts[r.Partition] = true
		s.last, s.vals = r, vals
	}
	for _, id := range slices.SortedFunc(maps.Keys(byID), compareIDs) {
		s := byID[id]
		w, ok := want[id]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("window %v: unexpected result (%d of them), last %s", id, s.n, s.last.Value))
			continue
		case lastOnly && len(s.parts) > 1:
			problems = append(problems, fmt.Sprintf("window %v: results in partitions %v, so none is last", id, slices.Sorted(maps.Keys(s.parts))))
			continue
		case !lastOnly && s.n != 1:
			problems = append(problems, fmt.Sprintf("window %v: %d results, want exactly one", id, s.n))
		}
		for _, n := range names {
			if !sameAggregate(s.vals[n], w[n]) {
				problems = append(problems, fmt.Sprintf("window %v: got %s (partition %d offset %d), want %s",
					id, formatAggregates(names, s.vals), s.last.Partition, s.last.Offset, formatAggregates(names, w)))
				break
			}
		}
	}
	for _, id := range slices.SortedFunc(maps.Keys(want), compareIDs) {
		if byID[id] == nil {
			problems = append(problems, fmt.Sprintf("window %v: no result, want %s", id, formatAggregates(names, want[id])))
		}
	}
	return problems
}

// TestExpectedWindowsByHand checks the reference computation and the
// result comparison of the stream tests against windows worked out by hand.
func TestExpectedWindowsByHand(t *testing.T) {
	aggs := []string{"count", "sum:price", "min:price", "max:price", "avg:price", "count-distinct:item"}
	rec := func(p int32, key string, ts int64, value string) streamRecord {
		return streamRecord{Partition: p, Key: []byte(key), Value: []byte(value), Timestamp: ts}
	}
	num := func(v float64) *float64 { return &v }
	// agg lists count, sum, min, max, avg (nil: null) and count-distinct.
	agg := func(count, sum float64, min, max, avg *float64, distinct float64) map[string]*float64 {
		return map[string]*float64{"count": num(count), "sum_price": num(sum), "min_price": min, "max_price": max, "avg_price": avg, "count_distinct_item": num(distinct)}
	}
	type want struct {
		windows map[windowID]map[string]*float64 // the closed ones
		open    []windowID
		late    int
	}
	for _, tc := range []struct {
		name  string
		q     streamQuery
		input []streamRecord
		want  want
	}{
		{
			name: "tumbling",
			q:    streamQuery{window: tumblingWindow(10 * time.Second), grace: 5000, aggs: aggs, key: "key", time: "timestamp"},
			input: []streamRecord{
				rec(0, "a", 1000, `{"price":1,"item":"x"}`),
				rec(0, "a", 9999, `{"price":2,"item":"y"}`),
				rec(0, "a", 10000, `{"price":3,"item":"x"}`), // the next window's first millisecond
				rec(0, "a", 4000, `{"price":4,"item":"x"}`),  // stream time 10000 < 10000+5000: joins [0, 10000)
				rec(0, "b", 14999, `{"item":null}`),          // no price, no item
				rec(0, "a", 5000, `{"price":8,"item":"w"}`),  // stream time 14999: [0, 10000) still open
				rec(0, "b", 15000, `{}`),                     // stream time 15000 closes [0, 10000)
				rec(0, "a", 2000, `{"price":5,"item":"z"}`),  // late
				rec(0, "a", 12000, `{"price":"6","item":7}`), // a string is no number; 7 is an item
				rec(0, "y", 90000, `{}`),
				rec(0, "z", 105000, `{}`), // closes everything else, [90000, 100000) just so
			},
			want: want{
				windows: map[windowID]map[string]*float64{
					{"a", 0, 10000}:      agg(4, 15, num(1), num(8), num(3.75), 3),
					{"a", 10000, 20000}:  agg(2, 3, num(3), num(3), num(3), 2),
					{"b", 10000, 20000}:  agg(2, 0, nil, nil, nil, 0),
					{"y", 90000, 100000}: agg(1, 0, nil, nil, nil, 0),
				},
				open: []windowID{{"z", 100000, 110000}},
				late: 1,
			},
		},
		{
			name: "hopping",
			q:    streamQuery{window: hoppingWindow(10*time.Second, 4*time.Second), grace: 2000, aggs: aggs, key: "key", time: "timestamp"},
			input: []streamRecord{
				rec(1, "a", 9000, `{"price":10}`),  // [0, 10000), [4000, 14000), [8000, 18000)
				rec(1, "a", 13000, `{"price":20}`), // [4000, 14000), [8000, 18000), [12000, 22000)
				rec(1, "a", 9500, `{"price":30}`),  // [0, 10000) closed at 12000: only the other two
				rec(1, "a", 1000, `{"price":40}`),  // [-8000, 2000), [-4000, 6000), [0, 10000) all closed: late
				rec(1, "z", 100000, `{}`),
			},
			want: want{
				windows: map[windowID]map[string]*float64{
					{"a", 0, 10000}:     agg(1, 10, num(10), num(10), num(10), 0),
					{"a", 4000, 14000}:  agg(3, 60, num(10), num(30), num(20), 0),
					{"a", 8000, 18000}:  agg(3, 60, num(10), num(30), num(20), 0),
					{"a", 12000, 22000}: agg(1, 20, num(20), num(20), num(20), 0),
				},
				open: []windowID{{"z", 92000, 102000}, {"z", 96000, 106000}, {"z", 100000, 110000}},
				late: 1,
			},
		},
		{
			name: "sliding",
			q:    streamQuery{window: slidingWindow(5 * time.Second), grace: 1000, aggs: aggs, key: "key", time: "timestamp"},
			input: []streamRecord{
				rec(0, "a", 10000, `{"price":1}`),
				rec(0, "a", 12000, `{"price":2}`),
				rec(0, "a", 20000, `{"price":3}`),
				rec(0, "a", 11000, `{"price":4}`), // 11000+1000 < 20000: late
				rec(0, "a", 19000, `{"price":5}`), // 19000+1000 = 20000: admitted
				rec(0, "a", 20000, `{"price":6}`), // the same time again
				rec(0, "z", 100000, `{}`),
				rec(0, "y", 99000, `{}`), // admitted; [94000, 99000] closes only after 100000
			},
			want: want{
				// Left windows [t-5000, t] of 10000, 12000, 19000 and
				// 20000; right windows [t+1, t+5001] of 10000 (12000 is
				// in it) and of 19000 (20000 is); none of 12000 and
				// 20000, nothing follows them closely enough.
				windows: map[windowID]map[string]*float64{
					{"a", 5000, 10000}:  agg(1, 1, num(1), num(1), num(1), 0),
					{"a", 7000, 12000}:  agg(2, 3, num(1), num(2), num(1.5), 0),
					{"a", 10001, 15001}: agg(1, 2, num(2), num(2), num(2), 0),
					{"a", 14000, 19000}: agg(1, 5, num(5), num(5), num(5), 0),
					{"a", 15000, 20000}: agg(3, 14, num(3), num(6), num(14.0/3), 0),
					{"a", 19001, 24001}: agg(2, 9, num(3), num(6), num(4.5), 0),
				},
				open: []windowID{{"y", 94000, 99000}, {"z", 95000, 100000}},
				late: 1,
			},
		},
		{
			name: "session",
			q:    streamQuery{window: sessionWindow(3 * time.Second), grace: 1000, aggs: aggs, key: "key", time: "timestamp"},
			input: []streamRecord{
				rec(0, "a", 10000, `{"price":1,"item":"x"}`),
				rec(0, "a", 12000, `{"price":2,"item":"y"}`), // within the gap: [10000, 12000]
				rec(0, "a", 20000, `{"price":3,"item":"x"}`), // [10000, 12000] closes (20000 > 16000); a new session
				rec(0, "a", 15500, `{"price":4}`),            // alone [15500, 15500] closed at 19500: late
				rec(0, "a", 17500, `{"price":5}`),            // joins [20000, 20000]: [17500, 20000]
				rec(0, "a", 14000, `{"price":6}`),            // near the closed session only: late
				rec(0, "a", 16000, `{"price":7}`),            // [16000, 20000]
				rec(0, "a", 14800, `{"price":9}`),            // within gap of both, joins the open one: [14800, 20000]
				// Partition 1 keeps its own stream time; grace 1000 is
				// short, but c's sessions stay open: nothing runs ahead.
				rec(1, "c", 1000, `{"price":1,"item":"x"}`),
				rec(1, "c", 5000, `{"price":2,"item":"y"}`), // 4000 past 1000: a second session
				rec(1, "c", 3500, `{"price":3,"item":"z"}`), // bridges both: [1000, 5000]
				rec(1, "c", 9000, `{"price":4,"item":"x"}`), // 4000 past 5000: [9000, 9000]
				rec(1, "d", 5000, `{"price":5,"item":"x"}`), // 5000+3000+1000 = 9000: admitted
				rec(0, "z", 100000, `{}`),
				rec(1, "e", 20000, `{}`),
				rec(1, "e", 23000, `{}`), // exactly the gap after: [20000, 23000]
				rec(1, "e", 17000, `{}`), // exactly the gap before: [17000, 23000]
				rec(1, "x", 96000, `{}`), // 96000+3000+1000 = 100000: still open at the end
				rec(1, "z1", 100000, `{}`),
			},
			want: want{
				windows: map[windowID]map[string]*float64{
					{"a", 10000, 12000}: agg(2, 3, num(1), num(2), num(1.5), 2),
					{"a", 14800, 20000}: agg(4, 24, num(3), num(9), num(6), 1),
					{"c", 1000, 5000}:   agg(3, 6, num(1), num(3), num(2), 3),
					{"c", 9000, 9000}:   agg(1, 4, num(4), num(4), num(4), 1),
					{"d", 5000, 5000}:   agg(1, 5, num(5), num(5), num(5), 1),
					{"e", 17000, 23000}: agg(3, 0, nil, nil, nil, 0),
				},
				open: []windowID{{"x", 96000, 96000}, {"z", 100000, 100000}, {"z1", 100000, 100000}},
				late: 2,
			},
		},
		{
			name: "fields",
			q:    streamQuery{window: tumblingWindow(10 * time.Second), grace: 0, aggs: aggs[:2], key: "field:user", time: "field:ts"},
			input: []streamRecord{
				// The record keys and timestamps mislead; the key and
				// time are the fields user and ts.
				rec(0, "b", 99999, `{"user":"a","ts":1000,"price":1}`),
				rec(0, "b", 5, `{"user":"a","ts":11000,"price":2}`),
				rec(0, "a", 5, `{"user":"a","ts":9000,"price":4}`), // [0, 10000) closed at 11000: late
				rec(0, "a", 5, `{"ts":12000,"price":4}`),           // no user: invalid
				rec(0, "a", 5, `{"user":"a","ts":"12000"}`),        // no number ts: invalid
				rec(0, "", 5, `{"user":"z","ts":100000}`),
			},
			want: want{
				windows: map[windowID]map[string]*float64{
					{"a", 0, 10000}:     {"count": num(1), "sum_price": num(1)},
					{"a", 10000, 20000}: {"count": num(1), "sum_price": num(2)},
				},
				open: []windowID{{"z", 100000, 110000}},
				late: 1,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, err := expectedWindows(tc.input, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if x.late != tc.want.late {
				t.Errorf("%d late records, want %d", x.late, tc.want.late)
			}
			var open []windowID
			for id, w := range x.windows {
				if !w.closed {
					open = append(open, id)
				}
			}
			slices.SortFunc(open, compareIDs)
			if !slices.Equal(open, tc.want.open) || x.open != len(tc.want.open) {
				t.Errorf("open windows %v (counted %d), want %v", open, x.open, tc.want.open)
			}
			got := x.results(tc.q, true)
			names := tc.q.aggNames()
			for _, p := range diffWindows(tc.want.windows, got, names) {
				t.Error(p)
			}
		})
	}

	t.Run("invalid", func(t *testing.T) {
		q := streamQuery{window: tumblingWindow(time.Second), aggs: []string{"count"}, key: "field:user", time: "field:ts"}
		x, err := expectedWindows([]streamRecord{
			{Partition: 0, Value: []byte(`{"user":"a","ts":5}`)},
			{Partition: 0, Value: []byte(`{"ts":5}`)},
			{Partition: 0, Value: []byte(`not json`)},
			{Partition: 0, Value: []byte(`{"user":"a","ts":-1}`)},
		}, q)
		if err != nil {
			t.Fatal(err)
		}
		if x.invalid != 3 || len(x.windows) != 1 {
			t.Errorf("got %d invalid records and %d windows, want 3 and 1", x.invalid, len(x.windows))
		}
		if _, err := expectedWindows([]streamRecord{rec(0, "a", 1, `{}`), rec(1, "a", 2, `{}`)}, streamQuery{window: tumblingWindow(time.Second), key: "key", time: "timestamp"}); err == nil {
			t.Error("a key in two partitions was not refused")
		}
	})

	t.Run("comparison", func(t *testing.T) {
		names := []string{"count", "sum_price", "avg_price"}
		want := map[windowID]map[string]*float64{
			{"a", 0, 10}:  {"count": num(2), "sum_price": num(0.3), "avg_price": num(0.15)},
			{"b", 10, 20}: {"count": num(1), "sum_price": num(0), "avg_price": nil},
		}
		a := outputRecord{Partition: 0, Offset: 0, Key: []byte(`{"key":"a","start":0,"end":10}`),
			Value: []byte(`{"start":0,"end":10,"key":"a","count":2,"sum_price":0.30000000000000004,"avg_price":0.15}`)}
		b := outputRecord{Partition: 1, Offset: 0, Key: []byte(`{"end":20,"start":10,"key":"b"}`),
			Value: []byte(`{"key":"b","start":10,"end":20,"count":1,"sum_price":0,"avg_price":null}`)}
		c := outputRecord{Partition: 2, Offset: 0, Key: []byte(`{"key":"c","start":0,"end":10}`),
			Value: []byte(`{"start":0,"end":10,"key":"c","count":1,"sum_price":1,"avg_price":1}`)}
		with := func(r outputRecord, part int32, off int64, value string) outputRecord {
			r.Partition, r.Offset = part, off
			if value != "" {
				r.Value = []byte(value)
			}
			return r
		}
		for _, c := range []struct {
			name     string
			got      []outputRecord
			lastOnly bool
			problems int
		}{
			{"exact", []outputRecord{b, a}, false, 0},
			{"missing", []outputRecord{a}, false, 1},
			{"twice", []outputRecord{a, b, with(a, 0, 1, "")}, false, 1},
			{"unexpected", []outputRecord{a, b, c}, false, 1},
			{"wrong sum", []outputRecord{a, with(b, 1, 0, `{"key":"b","start":10,"end":20,"count":1,"sum_price":1,"avg_price":null}`)}, false, 1},
			{"zero for null", []outputRecord{a, with(b, 1, 0, `{"key":"b","start":10,"end":20,"count":1,"sum_price":0,"avg_price":0}`)}, false, 1},
			// A malformed result counts, and its window is then missing.
			{"extra field", []outputRecord{a, with(b, 1, 0, `{"key":"b","start":10,"end":20,"count":1,"sum_price":0,"avg_price":null,"n":1}`)}, false, 2},
			{"value of another window", []outputRecord{a, with(b, 1, 0, `{"key":"b","start":0,"end":20,"count":1,"sum_price":0,"avg_price":null}`)}, false, 2},
			{"updates, last right", []outputRecord{with(a, 0, 5, ""), b, with(a, 0, 2, `{"start":0,"end":10,"key":"a","count":1,"sum_price":0.1,"avg_price":0.1}`)}, true, 0},
			{"updates, last wrong", []outputRecord{with(a, 0, 2, ""), b, with(a, 0, 5, `{"start":0,"end":10,"key":"a","count":1,"sum_price":0.1,"avg_price":0.1}`)}, true, 1},
			{"updates in two partitions", []outputRecord{a, b, with(a, 2, 0, "")}, true, 1},
		} {
			if p := diffResults(want, c.got, names, c.lastOnly); len(p) != c.problems {
				t.Errorf("%s: %d problems, want %d: %q", c.name, len(p), c.problems, p)
			}
		}
	})
}

// diffWindows compares two sets of window aggregates.
func diffWindows(want, got map[windowID]map[string]*float64, names []string) []string {
	var problems []string
	for _, id := range slices.SortedFunc(maps.Keys(want), compareIDs) {
		g, ok := got[id]
		if !ok {
			problems = append(problems, fmt.Sprintf("window %v missing, want %s", id, formatAggregates(names, want[id])))
			continue
		}
		for _, n := range names {
			if !sameAggregate(g[n], want[id][n]) {
				problems = append(problems, fmt.Sprintf("window %v: %s, want %s", id, formatAggregates(names, g), formatAggregates(names, want[id])))
				break
			}
		}
	}
	for _, id := range slices.SortedFunc(maps.Keys(got), compareIDs) {
		if _, ok := want[id]; !ok {
			problems = append(problems, fmt.Sprintf("unexpected window %v: %s", id, formatAggregates(names, got[id])))
		}
	}
	return problems
}
