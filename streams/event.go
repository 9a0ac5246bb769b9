package streams

import (
	"reflect"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fastjson"
)

// Event is an input record as the extractors see it; its value is parsed
// as JSON once, when a field is first asked for. NewEvent makes one.
type Event struct {
	Record *kgo.Record

	p      *fastjson.Parser
	v      *fastjson.Value
	parsed bool
}

// NewEvent returns the event of r.
func NewEvent(r *kgo.Record) *Event { return &Event{Record: r} }

func (e *Event) reset(r *kgo.Record) {
	e.Record, e.v, e.parsed = r, nil, false
}

func (e *Event) json() *fastjson.Value {
	if !e.parsed {
		e.parsed = true
		if e.p == nil {
			e.p = &fastjson.Parser{}
		}
		e.v, _ = e.p.ParseBytes(e.Record.Value)
	}
	return e.v
}

// String returns a JSON field of the value as a string: a string as it is,
// a number or boolean as written.
func (e *Event) String(field string) (string, bool) {
	v := e.json()
	if v == nil {
		return "", false
	}
	f := v.Get(field)
	if f == nil {
		return "", false
	}
	switch f.Type() {
	case fastjson.TypeString:
		b, _ := f.StringBytes()
		return string(b), true
	case fastjson.TypeNumber, fastjson.TypeTrue, fastjson.TypeFalse:
		return f.String(), true
	}
	return "", false
}

// Number returns a JSON field of the value that is a number.
func (e *Event) Number(field string) (float64, bool) {
	v := e.json()
	if v == nil {
		return 0, false
	}
	f := v.Get(field)
	if f == nil || f.Type() != fastjson.TypeNumber {
		return 0, false
	}
	n, err := f.Float64()
	return n, err == nil
}

// KeyFunc gives an event's group key, or false if it has none (the record
// is counted invalid and skipped).
type KeyFunc func(*Event) (string, bool)

// TimeFunc gives an event's time in epoch milliseconds, or false if it has
// none.
type TimeFunc func(*Event) (int64, bool)

// RecordKey groups by the record key (as a nil Config.Key does).
func RecordKey() KeyFunc { return recordKey }

func recordKey(e *Event) (string, bool) { return string(e.Record.Key), e.Record.Key != nil }

// isRecordKey reports whether f is RecordKey's function.
func isRecordKey(f KeyFunc) bool {
	return f == nil || reflect.ValueOf(f).Pointer() == reflect.ValueOf(KeyFunc(recordKey)).Pointer()
}

// JSONKey groups by a JSON field of the value.
func JSONKey(field string) KeyFunc {
	return func(e *Event) (string, bool) { return e.String(field) }
}

// RecordTime takes the record timestamp as the event time.
func RecordTime() TimeFunc {
	return func(e *Event) (int64, bool) { return e.Record.Timestamp.UnixMilli(), true }
}

// JSONTime takes a JSON field of the value, a number of epoch
// milliseconds, as the event time.
func JSONTime(field string) TimeFunc {
	return func(e *Event) (int64, bool) {
		n, ok := e.Number(field)
		if !ok || n < 0 || n > 1<<53 {
			return 0, false
		}
		return int64(n), true
	}
}
