package io.walkstream;

import java.util.Arrays;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

/**
 * A user's transitions: their high ratings in (event time, item) order, each paired with the
 * item before it. Keyed by user; emits Row(user, previous item, item, event time in s).
 *
 * <p>A rating waits in keyed state until the watermark passes its event time; then the items
 * of that second are sorted and paired on (a repeat of the item before makes no transition, so
 * an exact duplicate makes none). A rating at or behind the watermark when it arrives goes to
 * {@link #lateTag()}: this task's watermark is the one its timers fire on, so every rating is
 * either paired or reported. Keyed by user, the ordering spreads over every task (a global
 * SQL sort is one task for all users); lateness judged on a source task's own watermark would
 * lag the job's once that task is idle.
 */
public final class UserTransitions extends KeyedProcessFunction<Long, Row, Row> {
    private static final long MS = 1000L;

    private final int itemField;
    private final int eventTimeField;
    private final OutputTag<Row> late;
    /** Event time (ms) -> the items rated then, in arrival order. */
    private transient MapState<Long, long[]> pending;
    private transient ValueState<Long> last;

    /** Ratings of {@code rowType}: item and event time (BIGINT seconds) at these fields. */
    public UserTransitions(int itemField, int eventTimeField, TypeInformation<Row> rowType) {
        this.itemField = itemField;
        this.eventTimeField = eventTimeField;
        this.late = new OutputTag<>("late", rowType);
    }

    /** The key of a rating: its user id, at {@code userField}. */
    public static KeySelector<Row, Long> byUser(int userField) {
        return new ByUser(userField);
    }

    public OutputTag<Row> lateTag() {
        return late;
    }

    @Override
    public void open(OpenContext context) {
        pending = getRuntimeContext().getMapState(
            new MapStateDescriptor<>(
                "pending", Types.LONG, PrimitiveArrayTypeInfo.LONG_PRIMITIVE_ARRAY_TYPE_INFO));
        last = getRuntimeContext().getState(new ValueStateDescriptor<>("last", Types.LONG));
    }

    @Override
    public void processElement(Row rating, Context ctx, Collector<Row> out) throws Exception {
        long time = rating.<Long>getFieldAs(eventTimeField) * MS;
        if (time <= ctx.timerService().currentWatermark()) {
            ctx.output(late, rating);
            return;
        }
        long item = rating.<Long>getFieldAs(itemField);
        long[] items = pending.get(time);
        if (items == null) {
            pending.put(time, new long[] {item});
            ctx.timerService().registerEventTimeTimer(time);
        } else {
            long[] more = Arrays.copyOf(items, items.length + 1);
            more[items.length] = item;
            pending.put(time, more);
        }
    }

    @Override
    public void onTimer(long time, OnTimerContext ctx, Collector<Row> out) throws Exception {
        long[] items = pending.get(time);
        pending.remove(time);
        Arrays.sort(items);
        Long user = ctx.getCurrentKey();
        Long previous = last.value();
        for (long item : items) {
            if (previous != null && previous != item) {
                out.collect(Row.of(user, previous, item, time / MS));
            }
            previous = item;
        }
        last.update(previous);
    }

    private static final class ByUser implements KeySelector<Row, Long> {
        private final int userField;

        ByUser(int userField) {
            this.userField = userField;
        }

        @Override
        public Long getKey(Row rating) {
            return rating.getFieldAs(userField);
        }
    }
}
