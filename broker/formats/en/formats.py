# How the admin writes dates and times: 24-hour, with the zone (TIME_ZONE) named, so an
# operator never has to guess whether 14:03 is UTC or their own clock. Django reads this module
# through FORMAT_MODULE_PATH for the "en" locales; explicit |date formats are not affected.
DATETIME_FORMAT = "j M Y, H:i T"
SHORT_DATETIME_FORMAT = "j M Y, H:i T"
DATE_FORMAT = "j M Y"
SHORT_DATE_FORMAT = "j M Y"
TIME_FORMAT = "H:i T"
