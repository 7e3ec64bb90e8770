package io.walkstream;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * An item's first neighbours, for the items topic. Keyed by item; reads Row(item, neighbour),
 * one per sighting of the neighbour by the item (once per direction of their edge), and emits
 * Row(item, neighbour, times, n): how often the item has seen that neighbour, and how many
 * sightings the item has had, this one included.
 *
 * <p>Only an item's first {@code 2 * limit} sightings count: by then it knows {@code limit}
 * others. A sighting is emitted while the item knows fewer than {@code limit} others besides
 * the neighbour seen (a repeat of one it knows: fewer than {@code limit} in all), so merged
 * per item (later counts win) the records hold its first {@code limit} neighbours. A sighting
 * whose neighbour is null forgets the item ({@code stream.item_idle_ttl_s}): its next one is
 * its first again ({@code n} = 1). The state per item is its count and at most
 * {@code 2 * limit} (neighbour, times) pairs, whatever the item's degree.
 */
public final class ItemSightings extends KeyedProcessFunction<Long, Row, Row> {
    private final int limit;
    /** The item's sightings so far, then its (neighbour, times) pairs in order of first sight. */
    private transient ValueState<long[]> seen;

    public ItemSightings(int limit) {
        if (limit < 1) {
            throw new IllegalArgumentException("limit must be positive, got " + limit);
        }
        this.limit = limit;
    }

    /** The key of a sighting: its item, field 0. */
    public static KeySelector<Row, Long> byItem() {
        return new ByItem();
    }

    @Override
    public void open(OpenContext context) {
        seen = getRuntimeContext().getState(
            new ValueStateDescriptor<>("seen", PrimitiveArrayTypeInfo.LONG_PRIMITIVE_ARRAY_TYPE_INFO));
    }

    @Override
    public void processElement(Row sighting, Context ctx, Collector<Row> out) throws Exception {
        Long neighbour = sighting.getFieldAs(1);
        if (neighbour == null) {
            seen.clear();
            return;
        }
        long[] state = seen.value();
        long sightings = state == null ? 0 : state[0];
        if (sightings >= 2L * limit) {
            return;
        }
        int known = state == null ? 0 : (state.length - 1) / 2;
        int at = 1;
        while (at < 1 + 2 * known && state[at] != neighbour) {
            at += 2;
        }
        long times;
        if (at < 1 + 2 * known) {
            times = ++state[at + 1];
        } else {
            long[] grown = new long[1 + 2 * (known + 1)];
            if (state != null) {
                System.arraycopy(state, 0, grown, 0, state.length);
            }
            grown[at] = neighbour;
            grown[at + 1] = times = 1;
            state = grown;
        }
        state[0] = sightings + 1;
        seen.update(state);
        // a repeat: fewer than `limit` known in all; a new one: fewer besides it
        if (known < limit) {
            out.collect(Row.of(ctx.getCurrentKey(), neighbour, times, state[0]));
        }
    }

    private static final class ByItem implements KeySelector<Row, Long> {
        @Override
        public Long getKey(Row sighting) {
            return sighting.getFieldAs(0);
        }
    }
}
