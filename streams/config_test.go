package streams

import "testing"

func TestRepartitionOnlyForOtherKeys(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  KeyFunc
		want bool
	}{{"nil", nil, false}, {"RecordKey", RecordKey(), false}, {"JSONKey", JSONKey("user"), true}} {
		cfg := Config{Brokers: []string{"b"}, AppID: "a", Input: "i", Output: "o", Window: Tumbling(1e9), Aggs: []Agg{Count()}, Key: tc.key}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		if cfg.repartition != tc.want {
			t.Errorf("%s: repartition %v, want %v", tc.name, cfg.repartition, tc.want)
		}
	}
	k, err := ParseKey("key")
	if err != nil || !isRecordKey(k) {
		t.Errorf("ParseKey(key) is not the record key")
	}
}
