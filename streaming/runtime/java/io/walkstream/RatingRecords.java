package io.walkstream;

import java.nio.charset.StandardCharsets;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.kafka.shaded.org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * A ratings record as the job reads it: Row(k, v, partition, offset, received), where k is the
 * key as UTF-8 text (null for none; bytes that are not UTF-8 become U+FFFD), v the value's
 * bytes (null for a tombstone) and received the record's Kafka timestamp in whole seconds, 0
 * for a record without one. Nothing is parsed here: any bytes make a row.
 */
public final class RatingRecords implements KafkaRecordDeserializationSchema<Row> {
    private static final long serialVersionUID = 1L;
    private static final long MS = 1000L;

    /** The fields of a row, in order. */
    public static final String[] FIELDS = {"k", "v", "partition", "offset", "received"};

    @Override
    public void deserialize(ConsumerRecord<byte[], byte[]> record, Collector<Row> out) {
        byte[] key = record.key();
        out.collect(Row.of(
                key == null ? null : new String(key, StandardCharsets.UTF_8),
                record.value(),
                record.partition(),
                record.offset(),
                Math.max(0L, Math.floorDiv(record.timestamp(), MS))));
    }

    @Override
    public TypeInformation<Row> getProducedType() {
        return Types.ROW_NAMED(
                FIELDS,
                Types.STRING,
                Types.PRIMITIVE_ARRAY(Types.BYTE),
                Types.INT,
                Types.LONG,
                Types.LONG);
    }
}
