-- workload.sql - a small sqlite3 workload with a deterministic output, run by
-- run_program.sh with and without libhakmem.so preloaded.  Tables, a few
-- thousand rows in a transaction, aggregates, an index, updates, deletes,
-- text and blob values of many sizes (sqlite's page cache and its row
-- buffers both allocate), VACUUM and an integrity check.
PRAGMA page_size = 4096;
PRAGMA cache_size = 200;
CREATE TABLE item(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL, data BLOB);
CREATE TABLE tag(item_id INTEGER REFERENCES item(id), tag TEXT);
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
INSERT INTO item(id, grp, name, val, data)
  SELECT i, i % 37, printf('item-%05d-%s', i, substr('abcdefghijklmnopqrstuvwxyz', 1 + i % 26)),
         (i * 7919 % 10007) / 3.0,
         zeroblob(i % 97 * 31 + (CASE WHEN i % 500 = 0 THEN 300000 ELSE 0 END))
  FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 8000)
INSERT INTO tag(item_id, tag) SELECT 1 + (i * 31 % 5000), 'tag' || (i % 53) FROM n;
COMMIT;
.mode list
.separator |
SELECT 'rows', count(*), sum(length(data)), round(sum(val), 3) FROM item;
SELECT 'groups', grp, count(*), round(avg(val), 3), max(name) FROM item
  GROUP BY grp ORDER BY grp LIMIT 10;
CREATE INDEX item_grp_val ON item(grp, val);
CREATE INDEX tag_tag ON tag(tag, item_id);
SELECT 'top', t.tag, count(*), round(sum(i.val), 2) FROM tag t JOIN item i ON i.id = t.item_id
  GROUP BY t.tag ORDER BY count(*) DESC, t.tag LIMIT 8;
BEGIN;
UPDATE item SET name = name || '-' || hex(randomblob(0)) || printf('%.*c', id % 200, 'x')
  WHERE grp IN (1, 2, 3);
DELETE FROM item WHERE id % 11 = 0;
DELETE FROM tag WHERE item_id NOT IN (SELECT id FROM item);
COMMIT;
SELECT 'after', count(*), sum(length(name)), (SELECT count(*) FROM tag) FROM item;
SELECT 'like', count(*) FROM item WHERE name LIKE '%-m%x';
SELECT 'window', grp, id, round(val, 2), rank() OVER (PARTITION BY grp ORDER BY val DESC, id)
  FROM item WHERE grp = 5 ORDER BY val DESC, id LIMIT 5;
SELECT 'json', json_group_array(json_object('id', id, 'g', grp)) FROM
  (SELECT id, grp FROM item WHERE id < 40 ORDER BY id);
VACUUM;
PRAGMA integrity_check;
SELECT 'final', count(*), sum(grp), min(id), max(id) FROM item;
