package streams

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
)

type aggKind uint8

const (
	aggCount aggKind = iota
	aggSum
	aggMin
	aggMax
	aggAvg
	aggDistinct
)

var aggKinds = map[string]aggKind{"count": aggCount, "sum": aggSum, "min": aggMin, "max": aggMax, "avg": aggAvg, "count-distinct": aggDistinct}

// Agg is one aggregate computed per window.
type Agg struct {
	kind  aggKind
	field string
}

// Count counts a window's records.
func Count() Agg { return Agg{kind: aggCount} }

// Sum adds up a JSON number field.
func Sum(field string) Agg { return Agg{kind: aggSum, field: field} }

// Min is the least value of a JSON number field.
func Min(field string) Agg { return Agg{kind: aggMin, field: field} }

// Max is the greatest value of a JSON number field.
func Max(field string) Agg { return Agg{kind: aggMax, field: field} }

// Avg is the mean of a JSON number field.
func Avg(field string) Agg { return Agg{kind: aggAvg, field: field} }

// CountDistinct counts the distinct values of a JSON field.
func CountDistinct(field string) Agg { return Agg{kind: aggDistinct, field: field} }

// Name is the aggregate's name in results: "count", or the kind and the
// field joined by an underscore ("avg_price", "count_distinct_user").
func (a Agg) Name() string {
	switch a.kind {
	case aggCount:
		return "count"
	case aggSum:
		return "sum_" + a.field
	case aggMin:
		return "min_" + a.field
	case aggMax:
		return "max_" + a.field
	case aggAvg:
		return "avg_" + a.field
	}
	return "count_distinct_" + a.field
}

// sample is what one record brings to the aggregates: per aggregate, a
// number or a string (count-distinct), or nothing when the record lacks
// the field.
type sample struct {
	nums []float64
	strs []string
	has  []bool
}

func (s *sample) take(aggs []Agg, e *Event) {
	s.nums, s.strs, s.has = s.nums[:0], s.strs[:0], s.has[:0]
	for _, a := range aggs {
		var n float64
		var str string
		ok := true
		switch a.kind {
		case aggCount:
		case aggDistinct:
			str, ok = e.String(a.field)
		default:
			n, ok = e.Number(a.field)
		}
		s.nums, s.strs, s.has = append(s.nums, n), append(s.strs, str), append(s.has, ok)
	}
}

// aggState is one aggregate's running state in one window.
type aggState struct {
	n        int64   // records (count) or values (the others) taken
	sum      float64 // sum and avg
	min, max float64
	distinct map[string]struct{}
}

func (st *aggState) add(k aggKind, n float64, s string, has bool) {
	if k == aggCount {
		st.n++
		return
	}
	if !has {
		return
	}
	switch k {
	case aggDistinct:
		if st.distinct == nil {
			st.distinct = make(map[string]struct{})
		}
		st.distinct[s] = struct{}{}
	case aggMin:
		if st.n == 0 || n < st.min {
			st.min = n
		}
	case aggMax:
		if st.n == 0 || n > st.max {
			st.max = n
		}
	default:
		st.sum += n
	}
	st.n++
}

// merge adds o's records to st (sessions that a record joins).
func (st *aggState) merge(k aggKind, o *aggState) {
	switch k {
	case aggDistinct:
		for v := range o.distinct {
			if st.distinct == nil {
				st.distinct = make(map[string]struct{})
			}
			st.distinct[v] = struct{}{}
		}
	case aggMin:
		if o.n > 0 && (st.n == 0 || o.min < st.min) {
			st.min = o.min
		}
	case aggMax:
		if o.n > 0 && (st.n == 0 || o.max > st.max) {
			st.max = o.max
		}
	default:
		st.sum += o.sum
	}
	st.n += o.n
}

func (st *aggState) clone() aggState {
	c := *st
	if st.distinct != nil {
		c.distinct = make(map[string]struct{}, len(st.distinct))
		for v := range st.distinct {
			c.distinct[v] = struct{}{}
		}
	}
	return c
}

// appendJSON appends the aggregate's value: for min, max and avg null
// when no record had the field (a sum is then 0).
func (st *aggState) appendJSON(b []byte, k aggKind) []byte {
	switch k {
	case aggCount:
		return strconv.AppendInt(b, st.n, 10)
	case aggDistinct:
		return strconv.AppendInt(b, int64(len(st.distinct)), 10)
	}
	if st.n == 0 {
		if k == aggSum {
			return append(b, '0') // a sum of no values
		}
		return append(b, "null"...)
	}
	v := st.sum
	switch k {
	case aggMin:
		v = st.min
	case aggMax:
		v = st.max
	case aggAvg:
		v = st.sum / float64(st.n)
	}
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// A window's state encodes as: its end (varint), then per aggregate: n
// (varint), sum, min and max (8 bytes each), the distinct values (a count
// and length-prefixed strings).
func encodeWindow(b []byte, end int64, states []aggState) []byte {
	b = binary.AppendVarint(b, end)
	for i := range states {
		st := &states[i]
		b = binary.AppendVarint(b, st.n)
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(st.sum))
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(st.min))
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(st.max))
		vals := make([]string, 0, len(st.distinct))
		for v := range st.distinct {
			vals = append(vals, v)
		}
		slices.Sort(vals) // the same state always encodes the same
		b = binary.AppendUvarint(b, uint64(len(vals)))
		for _, v := range vals {
			b = binary.AppendUvarint(b, uint64(len(v)))
			b = append(b, v...)
		}
	}
	return b
}

var errBadState = errors.New("streams: undecodable window state")

func decodeWindow(b []byte, naggs int) (int64, []aggState, error) {
	end, n := binary.Varint(b)
	if n <= 0 {
		return 0, nil, errBadState
	}
	b = b[n:]
	states := make([]aggState, naggs)
	for i := range states {
		st := &states[i]
		var k int
		if st.n, k = binary.Varint(b); k <= 0 || len(b[k:]) < 24 {
			return 0, nil, errBadState
		}
		b = b[k:]
		st.sum = math.Float64frombits(binary.BigEndian.Uint64(b))
		st.min = math.Float64frombits(binary.BigEndian.Uint64(b[8:]))
		st.max = math.Float64frombits(binary.BigEndian.Uint64(b[16:]))
		b = b[24:]
		cnt, k := binary.Uvarint(b)
		if k <= 0 || cnt > uint64(len(b)) {
			return 0, nil, errBadState
		}
		b = b[k:]
		if cnt > 0 {
			st.distinct = make(map[string]struct{}, cnt)
		}
		for range cnt {
			l, k := binary.Uvarint(b)
			if k <= 0 || l > uint64(len(b[k:])) {
				return 0, nil, errBadState
			}
			st.distinct[string(b[k:k+int(l)])] = struct{}{}
			b = b[k+int(l):]
		}
	}
	if len(b) != 0 {
		return 0, nil, errBadState
	}
	return end, states, nil
}

// resultKey is a result's record key: the group key and the window bounds.
func resultKey(key string, start, end int64) []byte {
	b := append([]byte(`{"key":`), quoteJSON(key)...)
	b = append(b, `,"start":`...)
	b = strconv.AppendInt(b, start, 10)
	b = append(b, `,"end":`...)
	b = strconv.AppendInt(b, end, 10)
	return append(b, '}')
}

// resultValue is a result's record value: the window bounds, the group
// key and each aggregate by name.
func resultValue(aggs []Agg, key string, start, end int64, states []aggState) []byte {
	b := append([]byte(`{"start":`), strconv.FormatInt(start, 10)...)
	b = append(b, `,"end":`...)
	b = strconv.AppendInt(b, end, 10)
	b = append(b, `,"key":`...)
	b = append(b, quoteJSON(key)...)
	for i, a := range aggs {
		b = append(b, ',')
		b = append(b, quoteJSON(a.Name())...)
		b = append(b, ':')
		b = states[i].appendJSON(b, a.kind)
	}
	return append(b, '}')
}

func quoteJSON(s string) []byte {
	b, _ := json.Marshal(s) // a string always encodes
	return b
}
