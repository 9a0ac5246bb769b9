package broker_test

import (
	"slices"
	"strconv"
	"testing"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Config sources and types as DescribeConfigs reports them.
const (
	sourceDynamicTopic int8 = 1
	sourceDefault      int8 = 5
	typeLong           int8 = 5
	typeList           int8 = 7
)

func describeConfigsReq(v int16, typ kmsg.ConfigResourceType, name string, keys ...string) *kmsg.DescribeConfigsRequest {
	req := kmsg.NewPtrDescribeConfigsRequest()
	req.Version = v
	r := kmsg.NewDescribeConfigsRequestResource()
	r.ResourceType, r.ResourceName = typ, name
	if keys != nil {
		r.ConfigNames = keys
	}
	req.Resources = append(req.Resources, r)
	return req
}

// topicConfigs describes a topic's configs at DescribeConfigs v4 with
// synonyms and returns them by name.
func topicConfigs(t testing.TB, c *ktest.Conn, topic string) map[string]kmsg.DescribeConfigsResponseResourceConfig {
	t.Helper()
	req := describeConfigsReq(4, kmsg.ConfigResourceTypeTopic, topic)
	req.IncludeSynonyms = true
	resp := c.Do(req).(*kmsg.DescribeConfigsResponse)
	if len(resp.Resources) != 1 || resp.Resources[0].ErrorCode != 0 {
		t.Fatalf("describe %s: %+v", topic, resp.Resources)
	}
	out := make(map[string]kmsg.DescribeConfigsResponseResourceConfig)
	for _, cfg := range resp.Resources[0].Configs {
		if _, dup := out[cfg.Name]; dup {
			t.Fatalf("config %s reported twice", cfg.Name)
		}
		out[cfg.Name] = cfg
	}
	return out
}

// expectConfig checks one config's value and source.
func expectConfig(t testing.TB, cfgs map[string]kmsg.DescribeConfigsResponseResourceConfig, name, value string, source int8) {
	t.Helper()
	cfg, ok := cfgs[name]
	if !ok {
		t.Fatalf("config %s not reported", name)
	}
	if deref(cfg.Value) != value || int8(cfg.Source) != source {
		t.Fatalf("%s = %s (source %d), want %s (source %d)", name, deref(cfg.Value), cfg.Source, value, source)
	}
}

func TestDescribeTopicConfigs(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	createTopic(t, c, name, 1, "retention.ms", "1000", "cleanup.policy", "compact")

	for v := int16(0); v <= 4; v++ {
		t.Run("v"+strconv.Itoa(int(v))+"/all", func(t *testing.T) {
			req := describeConfigsReq(v, kmsg.ConfigResourceTypeTopic, name)
			req.IncludeSynonyms = v >= 1
			req.IncludeDocumentation = v >= 3
			resp := c.Do(req).(*kmsg.DescribeConfigsResponse)
			if len(resp.Resources) != 1 {
				t.Fatalf("%d resources", len(resp.Resources))
			}
			r := resp.Resources[0]
			if r.ErrorCode != 0 || r.ResourceName != name || r.ResourceType != kmsg.ConfigResourceTypeTopic {
				t.Fatalf("resource %s type %v error %d", r.ResourceName, r.ResourceType, r.ErrorCode)
			}
			cfgs := make(map[string]kmsg.DescribeConfigsResponseResourceConfig)
			for _, cfg := range r.Configs {
				cfgs[cfg.Name] = cfg
			}
			for _, n := range []string{"retention.ms", "retention.bytes", "cleanup.policy", "max.message.bytes", "message.timestamp.type", "segment.bytes", "min.insync.replicas", "compression.type"} {
				if _, ok := cfgs[n]; !ok {
					t.Errorf("%s not reported", n)
				}
			}
			rm, mm := cfgs["retention.ms"], cfgs["max.message.bytes"]
			if deref(rm.Value) != "1000" || deref(mm.Value) != "1048588" || deref(cfgs["cleanup.policy"].Value) != "compact" {
				t.Fatalf("retention.ms %s, max.message.bytes %s, cleanup.policy %s", deref(rm.Value), deref(mm.Value), deref(cfgs["cleanup.policy"].Value))
			}
			if rm.ReadOnly || rm.IsSensitive {
				t.Fatal("retention.ms is read-only or sensitive")
			}
			if v == 0 {
				if rm.IsDefault || !mm.IsDefault {
					t.Fatalf("v0 is_default: retention.ms %v, max.message.bytes %v", rm.IsDefault, mm.IsDefault)
				}
				return
			}
			if int8(rm.Source) != sourceDynamicTopic || int8(mm.Source) != sourceDefault {
				t.Fatalf("sources: retention.ms %d, max.message.bytes %d", rm.Source, mm.Source)
			}
			if len(rm.ConfigSynonyms) == 0 || rm.ConfigSynonyms[0].Name != "retention.ms" ||
				deref(rm.ConfigSynonyms[0].Value) != "1000" || int8(rm.ConfigSynonyms[0].Source) != sourceDynamicTopic {
				t.Fatalf("retention.ms synonyms %+v", rm.ConfigSynonyms)
			}
			if !slices.ContainsFunc(mm.ConfigSynonyms, func(s kmsg.DescribeConfigsResponseResourceConfigConfigSynonym) bool {
				return int8(s.Source) == sourceDefault && deref(s.Value) == "1048588"
			}) {
				t.Fatalf("max.message.bytes synonyms %+v lack the default", mm.ConfigSynonyms)
			}
			if v >= 3 {
				if rm.Documentation == nil || *rm.Documentation == "" {
					t.Fatal("retention.ms has no documentation")
				}
				if int8(rm.ConfigType) != typeLong || int8(cfgs["cleanup.policy"].ConfigType) != typeList {
					t.Fatalf("config types: retention.ms %d, cleanup.policy %d", rm.ConfigType, cfgs["cleanup.policy"].ConfigType)
				}
			}
		})
		t.Run("v"+strconv.Itoa(int(v))+"/named", func(t *testing.T) {
			req := describeConfigsReq(v, kmsg.ConfigResourceTypeTopic, name, "retention.ms", "cleanup.policy", "no.such.config")
			resp := c.Do(req).(*kmsg.DescribeConfigsResponse)
			r := resp.Resources[0]
			if r.ErrorCode != 0 {
				t.Fatalf("error %d", r.ErrorCode)
			}
			var got []string
			for _, cfg := range r.Configs {
				got = append(got, cfg.Name+"="+deref(cfg.Value))
				if v >= 1 && len(cfg.ConfigSynonyms) != 0 {
					t.Errorf("%s: synonyms without IncludeSynonyms", cfg.Name)
				}
				if cfg.Documentation != nil {
					t.Errorf("%s: documentation without IncludeDocumentation", cfg.Name)
				}
			}
			slices.Sort(got)
			if want := []string{"cleanup.policy=compact", "retention.ms=1000"}; !slices.Equal(got, want) {
				t.Fatalf("configs %q, want %q", got, want)
			}
		})
		t.Run("v"+strconv.Itoa(int(v))+"/unknown topic", func(t *testing.T) {
			resp := c.Do(describeConfigsReq(v, kmsg.ConfigResourceTypeTopic, uniqueTopic(t, ""))).(*kmsg.DescribeConfigsResponse)
			if len(resp.Resources) != 1 || resp.Resources[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
				t.Fatalf("resources %+v, want UNKNOWN_TOPIC_OR_PARTITION", resp.Resources)
			}
		})
	}
}

func TestDescribeBrokerConfigs(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	for v := int16(0); v <= 4; v++ {
		for _, tt := range []struct {
			name string
			want int16
		}{{"", 0}, {"1", 0}, {"2", kerr.InvalidRequest.Code}, {"x", kerr.InvalidRequest.Code}} {
			t.Run("v"+strconv.Itoa(int(v))+"/"+strconv.Quote(tt.name), func(t *testing.T) {
				resp := c.Do(describeConfigsReq(v, kmsg.ConfigResourceTypeBroker, tt.name)).(*kmsg.DescribeConfigsResponse)
				if len(resp.Resources) != 1 || resp.Resources[0].ErrorCode != tt.want {
					t.Fatalf("resources %+v, want error %d", resp.Resources, tt.want)
				}
				if tt.name != "1" {
					return
				}
				cfgs := make(map[string]string)
				for _, cfg := range resp.Resources[0].Configs {
					cfgs[cfg.Name] = deref(cfg.Value)
				}
				if cfgs["broker.id"] != "1" || cfgs["num.partitions"] != "1" || cfgs["auto.create.topics.enable"] != "true" {
					t.Fatalf("broker.id %q, num.partitions %q, auto.create.topics.enable %q", cfgs["broker.id"], cfgs["num.partitions"], cfgs["auto.create.topics.enable"])
				}
			})
		}
	}
}

func incrementalReq(v int16, topic string, validateOnly bool, ops ...kmsg.IncrementalAlterConfigsRequestResourceConfig) *kmsg.IncrementalAlterConfigsRequest {
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	req.Version = v
	req.ValidateOnly = validateOnly
	r := kmsg.NewIncrementalAlterConfigsRequestResource()
	r.ResourceType, r.ResourceName, r.Configs = kmsg.ConfigResourceTypeTopic, topic, ops
	req.Resources = append(req.Resources, r)
	return req
}

func op(kind kmsg.IncrementalAlterConfigOp, name string, value *string) kmsg.IncrementalAlterConfigsRequestResourceConfig {
	return kmsg.IncrementalAlterConfigsRequestResourceConfig{Name: name, Op: kind, Value: value}
}

func TestIncrementalAlterConfigs(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	const (
		set      = kmsg.IncrementalAlterConfigOpSet
		del      = kmsg.IncrementalAlterConfigOpDelete
		appendOp = kmsg.IncrementalAlterConfigOpAppend
		subtract = kmsg.IncrementalAlterConfigOpSubtract
	)
	alter := func(t *testing.T, v int16, topic string, validateOnly bool, ops ...kmsg.IncrementalAlterConfigsRequestResourceConfig) int16 {
		t.Helper()
		resp := c.Do(incrementalReq(v, topic, validateOnly, ops...)).(*kmsg.IncrementalAlterConfigsResponse)
		if len(resp.Resources) != 1 || resp.Resources[0].ResourceName != topic {
			t.Fatalf("resources %+v", resp.Resources)
		}
		return resp.Resources[0].ErrorCode
	}

	for v := int16(0); v <= 1; v++ {
		t.Run("v"+strconv.Itoa(int(v))+"/set append subtract delete", func(t *testing.T) {
			name := uniqueTopic(t, "")
			createTopic(t, c, name, 1)
			steps := []struct {
				op     kmsg.IncrementalAlterConfigsRequestResourceConfig
				value  string
				source int8
			}{
				{op(set, "cleanup.policy", ptr("compact")), "compact", sourceDynamicTopic},
				{op(appendOp, "cleanup.policy", ptr("delete")), "compact,delete", sourceDynamicTopic},
				{op(appendOp, "cleanup.policy", ptr("delete")), "compact,delete", sourceDynamicTopic}, // already there
				{op(subtract, "cleanup.policy", ptr("compact")), "delete", sourceDynamicTopic},
				{op(del, "cleanup.policy", nil), "delete", sourceDefault},
			}
			for i, s := range steps {
				if code := alter(t, v, name, false, s.op); code != 0 {
					t.Fatalf("step %d: error %d", i, code)
				}
				expectConfig(t, topicConfigs(t, c, name), "cleanup.policy", s.value, s.source)
			}
		})
	}

	// Kafka appends to the current value, which for a config the topic does
	// not set is its default: cleanup.policy is "delete" by default, so
	// appending "compact" gives "delete,compact" (ConfigurationControlManager
	// getParts falls back to the schema default).
	t.Run("append to an unset list starts from its default", func(t *testing.T) {
		name := uniqueTopic(t, "")
		createTopic(t, c, name, 1)
		if code := alter(t, 1, name, false, op(appendOp, "cleanup.policy", ptr("compact"))); code != 0 {
			t.Fatalf("error %d", code)
		}
		expectConfig(t, topicConfigs(t, c, name), "cleanup.policy", "delete,compact", sourceDynamicTopic)
	})

	t.Run("several ops in one request", func(t *testing.T) {
		name := uniqueTopic(t, "")
		createTopic(t, c, name, 1, "retention.bytes", "5000")
		code := alter(t, 1, name, false, op(set, "retention.ms", ptr("60000")), op(del, "retention.bytes", nil))
		if code != 0 {
			t.Fatalf("error %d", code)
		}
		cfgs := topicConfigs(t, c, name)
		expectConfig(t, cfgs, "retention.ms", "60000", sourceDynamicTopic)
		expectConfig(t, cfgs, "retention.bytes", "-1", sourceDefault)
	})

	errorCases := []struct {
		name string
		ops  []kmsg.IncrementalAlterConfigsRequestResourceConfig
		want int16
	}{
		{"unknown config", []kmsg.IncrementalAlterConfigsRequestResourceConfig{op(set, "no.such.config", ptr("1"))}, kerr.InvalidConfig.Code},
		{"bad value", []kmsg.IncrementalAlterConfigsRequestResourceConfig{op(set, "retention.ms", ptr("abc"))}, kerr.InvalidConfig.Code},
		{"bad list item", []kmsg.IncrementalAlterConfigsRequestResourceConfig{op(appendOp, "cleanup.policy", ptr("bogus"))}, kerr.InvalidConfig.Code},
		// Kafka (KRaft, ConfigurationControlManager): "Can't APPEND to key
		// retention.ms because its type is not LIST." with INVALID_CONFIG.
		{"append to a non-list", []kmsg.IncrementalAlterConfigsRequestResourceConfig{op(appendOp, "retention.ms", ptr("5"))}, kerr.InvalidConfig.Code},
		{"second op invalid", []kmsg.IncrementalAlterConfigsRequestResourceConfig{op(set, "retention.ms", ptr("5")), op(set, "no.such.config", ptr("1"))}, kerr.InvalidConfig.Code},
	}
	for _, tt := range errorCases {
		t.Run(tt.name, func(t *testing.T) {
			name := uniqueTopic(t, "")
			createTopic(t, c, name, 1)
			if code := alter(t, 1, name, false, tt.ops...); code != tt.want {
				t.Fatalf("error %d, want %d", code, tt.want)
			}
			// Nothing was applied, not even the valid part.
			expectConfig(t, topicConfigs(t, c, name), "retention.ms", "604800000", sourceDefault)
		})
	}

	t.Run("validate only", func(t *testing.T) {
		name := uniqueTopic(t, "")
		createTopic(t, c, name, 1)
		if code := alter(t, 1, name, true, op(set, "cleanup.policy", ptr("compact"))); code != 0 {
			t.Fatalf("error %d", code)
		}
		expectConfig(t, topicConfigs(t, c, name), "cleanup.policy", "delete", sourceDefault)
		if code := alter(t, 1, name, true, op(set, "no.such.config", ptr("1"))); code != kerr.InvalidConfig.Code {
			t.Fatalf("validate-only with an unknown config: error %d, want INVALID_CONFIG", code)
		}
	})

	t.Run("unknown topic", func(t *testing.T) {
		if code := alter(t, 1, uniqueTopic(t, ""), false, op(set, "cleanup.policy", ptr("compact"))); code != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("error %d, want UNKNOWN_TOPIC_OR_PARTITION", code)
		}
	})
}

func TestAlterConfigs(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	for v := int16(0); v <= 2; v++ {
		t.Run("v"+strconv.Itoa(int(v)), func(t *testing.T) {
			name := uniqueTopic(t, "")
			createTopic(t, c, name, 1, "retention.ms", "1000", "retention.bytes", "2000")
			req := kmsg.NewPtrAlterConfigsRequest()
			req.Version = v
			r := kmsg.NewAlterConfigsRequestResource()
			r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeTopic, name
			r.Configs = []kmsg.AlterConfigsRequestResourceConfig{{Name: "cleanup.policy", Value: ptr("compact")}, {Name: "retention.ms", Value: ptr("3000")}}
			req.Resources = append(req.Resources, r)
			resp := c.Do(req).(*kmsg.AlterConfigsResponse)
			if len(resp.Resources) != 1 || resp.Resources[0].ErrorCode != 0 || resp.Resources[0].ResourceName != name {
				t.Fatalf("resources %+v", resp.Resources)
			}
			cfgs := topicConfigs(t, c, name)
			expectConfig(t, cfgs, "cleanup.policy", "compact", sourceDynamicTopic)
			expectConfig(t, cfgs, "retention.ms", "3000", sourceDynamicTopic)
			// Not in the new set: back to its default.
			expectConfig(t, cfgs, "retention.bytes", "-1", sourceDefault)

			// An invalid set changes nothing.
			r.Configs = []kmsg.AlterConfigsRequestResourceConfig{{Name: "retention.ms", Value: ptr("abc")}}
			req.Resources = []kmsg.AlterConfigsRequestResource{r}
			resp = c.Do(req).(*kmsg.AlterConfigsResponse)
			if resp.Resources[0].ErrorCode != kerr.InvalidConfig.Code {
				t.Fatalf("invalid value: error %d, want INVALID_CONFIG", resp.Resources[0].ErrorCode)
			}
			expectConfig(t, topicConfigs(t, c, name), "retention.ms", "3000", sourceDynamicTopic)
		})
	}
}
