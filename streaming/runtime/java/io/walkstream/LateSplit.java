package io.walkstream;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

/**
 * Passes on the rows whose event time is ahead of this task's watermark; the others, at or
 * behind it, go to the side output {@link #lateTag()}.
 *
 * <p>The job runs it as one task right before its sort, which drops whatever is behind its
 * watermark without a trace: the sort sees the same watermarks, after the rows this passed, so
 * every row is either sorted or reported late. A test upstream, on one source task's
 * watermark, lags the sort's once that task was idle (README, "Streaming job").
 */
public final class LateSplit extends ProcessFunction<Row, Row> {
    private static final long MS = 1000L;

    private final int eventTimeField;
    private final OutputTag<Row> late;

    /** Rows of {@code rowType}, whose field {@code eventTimeField} is a BIGINT in seconds. */
    public LateSplit(int eventTimeField, TypeInformation<Row> rowType) {
        this.eventTimeField = eventTimeField;
        this.late = new OutputTag<>("late", rowType);
    }

    public OutputTag<Row> lateTag() {
        return late;
    }

    @Override
    public void processElement(Row row, Context ctx, Collector<Row> out) {
        long eventTime = row.<Long>getFieldAs(eventTimeField);
        if (eventTime * MS <= ctx.timerService().currentWatermark()) {
            ctx.output(late, row);
        } else {
            out.collect(row);
        }
    }
}
