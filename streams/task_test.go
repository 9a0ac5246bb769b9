package streams

import (
	"bytes"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func testTask(t *testing.T, w Window, emit Emit) *task {
	t.Helper()
	cfg := &Config{Brokers: []string{"b"}, AppID: "a", Input: "i", Output: "o", Window: w,
		Aggs: []Agg{Count(), Sum("v"), CountDistinct("v")}, Grace: time.Second, Emit: emit}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return newTask(cfg, 0)
}

func feed(tk *task, key string, ts int64, value string) {
	e := NewEvent(&kgo.Record{Key: []byte(key), Value: []byte(value), Timestamp: time.UnixMilli(ts)})
	tk.process(e)
}

// snapshot is a task's state as its changelog would hold it.
func snapshot(tk *task) map[string]string {
	out := map[string]string{"meta": string(encodeMeta(tk.meta))}
	for key, byStart := range tk.wins {
		for start, w := range byStart {
			out[string(windowKey(key, start))] = string(encodeWin(w))
		}
	}
	return out
}

// TestRollbackRestoresCommittedState processes records of every window
// kind, commits, processes more (closing, merging and creating windows)
// and rolls back: the state is the committed one again, and the changes
// of the committed part, applied to an empty task, give the same state.
func TestRollbackRestoresCommittedState(t *testing.T) {
	for _, w := range []Window{Tumbling(10 * time.Second), Hopping(10*time.Second, 5*time.Second), Sliding(5 * time.Second), Session(3 * time.Second)} {
		t.Run(w.String(), func(t *testing.T) {
			tk := testTask(t, w, EmitOnUpdate)
			for i, ts := range []int64{1000, 2500, 4000, 12000, 9000} {
				feed(tk, []string{"a", "b"}[i%2], ts, `{"v":`+string(rune('1'+i))+`}`)
			}
			tk.closeDue()
			replica := newTask(tk.cfg, 0)
			for _, wr := range tk.changes() {
				if err := replica.apply(wr.key, wr.value); err != nil {
					t.Fatal(err)
				}
			}
			tk.committed()
			before := snapshot(tk)
			if got := snapshot(replica); !equalMaps(got, before) {
				t.Fatalf("changelog replay gives %d entries, the task holds %d", len(got), len(before))
			}
			for i, ts := range []int64{14000, 30000, 7000, 31000, 13500} {
				feed(tk, []string{"a", "b", "c"}[i%3], ts, `{"v":9}`)
			}
			tk.closeDue()
			if len(tk.out) == 0 || equalMaps(snapshot(tk), before) {
				t.Fatal("the second part changed nothing: the test proves nothing")
			}
			tk.rollback()
			if got := snapshot(tk); !equalMaps(got, before) {
				t.Errorf("after the rollback the task holds %d entries, %d were committed", len(got), len(before))
			}
			if len(tk.out) != 0 || len(tk.changes()) != 0 {
				t.Errorf("after the rollback %d results and %d changes are pending", len(tk.out), len(tk.changes()))
			}
		})
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal([]byte(v), []byte(w)) {
			return false
		}
	}
	return true
}

// TestFixedStarts checks the windows a time falls in.
func TestFixedStarts(t *testing.T) {
	for _, tc := range []struct {
		w    Window
		t    int64
		want []int64
	}{
		{Tumbling(10 * time.Second), 12345, []int64{10000}},
		{Tumbling(10 * time.Second), 10000, []int64{10000}},
		{Hopping(10*time.Second, 5*time.Second), 12345, []int64{5000, 10000}},
		{Hopping(10*time.Second, 3*time.Second), 12345, []int64{3000, 6000, 9000, 12000}},
		{Hopping(10*time.Second, 3*time.Second), 0, []int64{-9000, -6000, -3000, 0}},
	} {
		var got []int64
		tc.w.fixedStarts(tc.t, func(s int64) { got = append(got, s) })
		if len(got) != len(tc.want) {
			t.Errorf("%v at %d: %v, want %v", tc.w, tc.t, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%v at %d: %v, want %v", tc.w, tc.t, got, tc.want)
				break
			}
		}
	}
}

// FuzzDecodeState feeds arbitrary changelog records to a task: a record
// it cannot decode is an error, never a panic, and the state of one it
// decodes encodes and decodes back to itself.
func FuzzDecodeState(f *testing.F) {
	st := []aggState{{n: 3, sum: 6, min: 1, max: 3, distinct: map[string]struct{}{"x": {}, "y": {}}}, {n: 1}, {}}
	f.Add(windowKey("user", 10000), encodeWin(&win{end: 20000, aggs: st}))
	f.Add(windowKey("", -5), encodeWin(&win{end: 0, closed: true, aggs: make([]aggState, 3)}))
	f.Add([]byte("m"), encodeMeta(meta{streamTime: 123, closedTo: noTime}))
	f.Add([]byte("w\xff"), []byte{1, 2})
	f.Fuzz(func(t *testing.T, key, value []byte) {
		tk := newTask(&Config{Aggs: []Agg{Count(), Sum("v"), CountDistinct("v")}, Window: Tumbling(time.Second)}, 0)
		if err := tk.apply(key, value); err != nil {
			return
		}
		if bytes.Equal(key, metaKey) {
			// Varints decode from non-minimal forms too: the state
			// must survive a second round.
			if again, err := decodeMeta(encodeMeta(tk.meta)); value != nil && (err != nil || again != tk.meta) {
				t.Errorf("meta %x decodes to %+v, which does not encode and decode back", value, tk.meta)
			}
			return
		}
		gk, start, _ := parseWindowKey(key)
		if !bytes.Equal(windowKey(gk, start), key) {
			t.Errorf("key %x parses to %q/%d, which encodes to %x", key, gk, start, windowKey(gk, start))
		}
		if value == nil {
			return
		}
		w := tk.wins[gk][start]
		if w == nil {
			t.Fatalf("window %q/%d decoded but not held", gk, start)
		}
		if got := encodeWin(w); !bytes.Equal(got, value) {
			// Distinct values are sorted when encoded; a value with
			// them out of order or repeated decodes to the same state.
			again, err := decodeWin(got, 3)
			if err != nil || !bytes.Equal(encodeWin(again), got) {
				t.Errorf("value %x decodes to a window that encodes to %x, which does not decode back", value, got)
			}
		}
	})
}
