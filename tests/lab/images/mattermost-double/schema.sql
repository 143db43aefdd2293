-- Schema of the Mattermost TEST DOUBLE: a subset of Mattermost's own, with its table and column names
-- (posts exactly as Mattermost has it). Run at every start, idempotently; see mmdouble.py Database.migrate.
CREATE TABLE IF NOT EXISTS users (id varchar(26) PRIMARY KEY, createat bigint, updateat bigint, deleteat bigint,
  username varchar(64) UNIQUE, password varchar(128), authservice varchar(32) DEFAULT '', email varchar(128) UNIQUE,
  emailverified boolean DEFAULT false, nickname varchar(64) DEFAULT '', firstname varchar(64) DEFAULT '', lastname varchar(64)
  DEFAULT '', roles varchar(256), props jsonb DEFAULT '{}', notifyprops jsonb DEFAULT '{}', lastpasswordupdate bigint,
  failedattempts integer DEFAULT 0, locale varchar(5) DEFAULT 'en', lastlogin bigint DEFAULT 0, isbot boolean DEFAULT false);
CREATE TABLE IF NOT EXISTS sessions (id varchar(26) PRIMARY KEY, token varchar(26), createat bigint, expiresat bigint,
  lastactivityat bigint, userid varchar(26), deviceid varchar(512) DEFAULT '', roles varchar(256), props jsonb DEFAULT '{}');
CREATE INDEX IF NOT EXISTS idx_sessions_token ON sessions (token);
CREATE TABLE IF NOT EXISTS teams (id varchar(26) PRIMARY KEY, createat bigint, updateat bigint, deleteat bigint,
  displayname varchar(64), name varchar(64) UNIQUE, description varchar(255) DEFAULT '', type varchar(255),
  inviteid varchar(32), allowopeninvite boolean DEFAULT false, schemeid varchar(26), groupconstrained boolean);
CREATE TABLE IF NOT EXISTS teammembers (teamid varchar(26), userid varchar(26), roles varchar(256), deleteat bigint DEFAULT 0,
  schemeuser boolean, schemeadmin boolean, schemeguest boolean, createat bigint DEFAULT 0, PRIMARY KEY (teamid, userid));
CREATE TABLE IF NOT EXISTS channels (id varchar(26) PRIMARY KEY, createat bigint, updateat bigint, deleteat bigint,
  teamid varchar(26), type varchar(1), displayname varchar(64), name varchar(64), header varchar(1024) DEFAULT '',
  purpose varchar(250) DEFAULT '', lastpostat bigint DEFAULT 0, totalmsgcount bigint DEFAULT 0, creatorid varchar(26),
  groupconstrained boolean, shared boolean, lastrootpostat bigint DEFAULT 0, UNIQUE (name, teamid));
CREATE TABLE IF NOT EXISTS channelmembers (channelid varchar(26), userid varchar(26), roles varchar(256),
  lastviewedat bigint DEFAULT 0, msgcount bigint DEFAULT 0, mentioncount bigint DEFAULT 0, notifyprops jsonb DEFAULT '{}',
  lastupdateat bigint, schemeuser boolean, schemeadmin boolean, schemeguest boolean, PRIMARY KEY (channelid, userid));
CREATE INDEX IF NOT EXISTS idx_channelmembers_user_id_channel_id_last_viewed_at ON channelmembers (userid, channelid, lastviewedat);
CREATE TABLE IF NOT EXISTS posts (id varchar(26) PRIMARY KEY, createat bigint, updateat bigint, editat bigint, deleteat bigint,
  ispinned boolean, userid varchar(26), channelid varchar(26), rootid varchar(26), originalid varchar(26),
  message varchar(65535), type varchar(26), props jsonb, hashtags varchar(1000), filenames varchar(4000),
  fileids varchar(300), hasreactions boolean, remoteid varchar(26));
CREATE INDEX IF NOT EXISTS idx_posts_channel_id_delete_at_create_at ON posts (channelid, deleteat, createat);
CREATE INDEX IF NOT EXISTS idx_posts_create_at ON posts (createat);
CREATE INDEX IF NOT EXISTS idx_posts_update_at ON posts (updateat);
CREATE INDEX IF NOT EXISTS idx_posts_root_id_delete_at ON posts (rootid, deleteat);
CREATE INDEX IF NOT EXISTS idx_posts_message_txt ON posts USING gin (to_tsvector('english', message));
CREATE TABLE IF NOT EXISTS reactions (userid varchar(26), postid varchar(26), emojiname varchar(64), createat bigint,
  updateat bigint, deleteat bigint, channelid varchar(26) DEFAULT '', PRIMARY KEY (postid, userid, emojiname));
CREATE TABLE IF NOT EXISTS fileinfo (id varchar(26) PRIMARY KEY, creatorid varchar(26), postid varchar(26), channelid varchar(26),
  createat bigint, updateat bigint, deleteat bigint, path varchar(512), name varchar(256), size bigint, mimetype varchar(256));
CREATE INDEX IF NOT EXISTS idx_fileinfo_postid_at ON fileinfo (postid);
CREATE TABLE IF NOT EXISTS threads (postid varchar(26) PRIMARY KEY, replycount bigint, lastreplyat bigint,
  participants jsonb, channelid varchar(26), threaddeleteat bigint, threadteamid varchar(26));
