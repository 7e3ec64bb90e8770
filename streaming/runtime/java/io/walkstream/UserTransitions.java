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
 *
 * <p>With {@code recentItems} > 0 it also keeps each user's last {@code recentItems} items of
 * that sequence and, after a timer that changed them, sends Row(user, kept, items, event time
 * in s) to {@link #usersTag()}: {@code kept} counts the items the user's sequence ever had
 * (it only grows, so a reader keeps the record with the highest), {@code items} the recent
 * ones, oldest first, separated by commas.
 *
 * <p>With {@code idleTtlSeconds} > 0 a user with no kept rating for that long in event time is
 * forgotten (an event-time timer clears their state): their next rating starts a new sequence
 * (no transition from the item before the gap) and new recent items. So per-user state holds
 * only the users active within the TTL, and what it holds depends on the events alone.
 */
public final class UserTransitions extends KeyedProcessFunction<Long, Row, Row> {
    private static final long MS = 1000L;

    private final int itemField;
    private final int eventTimeField;
    private final OutputTag<Row> late;
    private final OutputTag<Row> users;
    private final int recentItems;
    private final long idleTtlMs;
    /** Event time (ms) -> the items rated then, in arrival order. */
    private transient MapState<Long, long[]> pending;
    private transient ValueState<Long> last;
    /** How many items the sequence ever had, then the last {@code recentItems}, oldest first. */
    private transient ValueState<long[]> recent;
    /** When (event time, ms) the user is forgotten unless they rate again before. */
    private transient ValueState<Long> forgetAt;

    /**
     * Ratings of {@code rowType}: item and event time (BIGINT seconds) at these fields; each
     * user's last {@code recentItems} items to {@link #usersTag()} (0: none); users idle for
     * {@code idleTtlSeconds} of event time forgotten (0: never).
     */
    public UserTransitions(
            int itemField,
            int eventTimeField,
            TypeInformation<Row> rowType,
            int recentItems,
            int idleTtlSeconds) {
        this.itemField = itemField;
        this.eventTimeField = eventTimeField;
        this.late = new OutputTag<>("late", rowType);
        this.users = new OutputTag<>(
            "users",
            Types.ROW_NAMED(
                new String[] {"user_id", "kept", "items", "event_time"},
                Types.LONG, Types.LONG, Types.STRING, Types.LONG));
        this.recentItems = recentItems;
        this.idleTtlMs = idleTtlSeconds * MS;
    }

    /** The key of a rating: its user id, at {@code userField}. */
    public static KeySelector<Row, Long> byUser(int userField) {
        return new ByUser(userField);
    }

    public OutputTag<Row> lateTag() {
        return late;
    }

    public OutputTag<Row> usersTag() {
        return users;
    }

    @Override
    public void open(OpenContext context) {
        pending = getRuntimeContext().getMapState(
            new MapStateDescriptor<>(
                "pending", Types.LONG, PrimitiveArrayTypeInfo.LONG_PRIMITIVE_ARRAY_TYPE_INFO));
        last = getRuntimeContext().getState(new ValueStateDescriptor<>("last", Types.LONG));
        recent = getRuntimeContext().getState(
            new ValueStateDescriptor<>("recent", PrimitiveArrayTypeInfo.LONG_PRIMITIVE_ARRAY_TYPE_INFO));
        forgetAt = getRuntimeContext().getState(new ValueStateDescriptor<>("forget-at", Types.LONG));
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
        if (time % MS != 0) { // the idle timer: ratings' timers fall on whole seconds
            Long at = forgetAt.value();
            if (at != null && at == time) {
                last.clear();
                recent.clear();
                forgetAt.clear();
            }
            return;
        }
        long[] items = pending.get(time);
        pending.remove(time);
        if (idleTtlMs > 0) { // active at `time`: forgotten only after the TTL from here
            Long at = forgetAt.value();
            if (at != null) {
                ctx.timerService().deleteEventTimeTimer(at);
            }
            // one millisecond past the second, so that it never shares a timer with a rating
            // (Flink keeps one timer per key and time: deleting it would strand the rating)
            long next = time + idleTtlMs + 1;
            forgetAt.update(next);
            ctx.timerService().registerEventTimeTimer(next);
        }
        Arrays.sort(items);
        Long user = ctx.getCurrentKey();
        Long previous = last.value();
        long[] kept = new long[items.length];
        int added = 0;
        for (long item : items) {
            if (previous == null || previous != item) {
                if (previous != null) {
                    out.collect(Row.of(user, previous, item, time / MS));
                }
                kept[added++] = item;
            }
            previous = item;
        }
        last.update(previous);
        if (recentItems > 0 && added > 0) {
            remember(user, Arrays.copyOf(kept, added), time / MS, ctx);
        }
    }

    private void remember(Long user, long[] kept, long seconds, OnTimerContext ctx)
            throws Exception {
        long[] state = recent.value();
        long count = state == null ? 0 : state[0];
        int had = state == null ? 0 : state.length - 1;
        int size = Math.min(recentItems, had + kept.length);
        long[] next = new long[size + 1];
        next[0] = count + kept.length;
        for (int i = size, k = kept.length - 1, h = had; i >= 1; i--) {
            next[i] = k >= 0 ? kept[k--] : state[h--];
        }
        recent.update(next);
        StringBuilder joined = new StringBuilder();
        for (int i = 1; i <= size; i++) {
            if (i > 1) {
                joined.append(',');
            }
            joined.append(next[i]);
        }
        ctx.output(users, Row.of(user, next[0], joined.toString(), seconds));
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
